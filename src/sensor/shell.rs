//! The fake shell behind the SSH and Telnet honeypots: canned answers to a
//! few reconnaissance commands, "not found" for everything else. Nothing is
//! ever run.

/// What the fake shell prints for one command line (with a trailing newline
/// where there is output), and whether the client asked to leave.
pub(crate) fn respond(line: &str, user: &str) -> (String, bool) {
    let mut out = String::new();
    for part in line.split([';', '&', '|']) {
        let part = part.trim();
        let word = part.split_whitespace().next().unwrap_or_default();
        let text = match word {
            "" | "cd" | "export" | "echo" | "chmod" | "rm" | "history" | "unset" => continue,
            "exit" | "logout" => return (out, true),
            "uname" if part.contains("-a") => {
                "Linux web01 5.15.0-91-generic #101-Ubuntu SMP x86_64 GNU/Linux"
            }
            "uname" => "Linux",
            "whoami" => user,
            "id" => "uid=0(root) gid=0(root) groups=0(root)",
            "pwd" => "/root",
            "nproc" => "2",
            "ls" => "",
            _ => {
                let name: String = word.chars().take(64).collect();
                out.push_str("-bash: ");
                out.push_str(&name);
                out.push_str(": command not found\r\n");
                continue;
            }
        };
        if !text.is_empty() {
            out.push_str(text);
            out.push_str("\r\n");
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_answers() {
        assert!(respond("uname -a", "root").0.starts_with("Linux web01"));
        assert_eq!(respond("whoami; exit", "admin"), ("admin\r\n".into(), true));
        assert!(respond("./x", "root").0.contains("command not found"));
    }
}
