//! The `command` template: `"python3 app.py --port {port}"` becomes an argv. The template
//! is split into words with shell rules first and the placeholders are substituted inside
//! each word afterwards, so a value can never add, remove or re-quote a word. The program
//! is run directly, not through a shell, unless the user writes `sh -c '...'`.

use crate::RuntimeError;
use std::collections::BTreeMap;

/// The values placeholders stand for.
#[derive(Debug, Clone)]
pub(crate) struct Vars<'a> {
    pub port: u16,
    pub version: &'a str,
    pub app: &'a str,
    pub instance: &'a str,
}

// === impl Vars ===

impl Vars<'_> {
    /// Replaces `{port}`, `{version}`, `{app}` and `{instance}`; other braces stay as they
    /// are (`awk '{print $1}'` keeps working).
    pub fn substitute(&self, text: &str) -> String {
        text.replace("{port}", &self.port.to_string())
            .replace("{version}", self.version)
            .replace("{app}", self.app)
            .replace("{instance}", self.instance)
    }

    /// The environment every instance gets on top of the app's `env` (whose values may use
    /// the same placeholders, e.g. `SERVER_PORT = "{port}"`).
    pub fn env(&self, user: &BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = user
            .iter()
            .map(|(k, v)| (k.clone(), self.substitute(v)))
            .collect();
        env.push(("PORT".into(), self.port.to_string()));
        env.push(("BATON_VERSION".into(), self.version.into()));
        env.push(("BATON_APP".into(), self.app.into()));
        env.push(("BATON_INSTANCE".into(), self.instance.into()));
        env
    }
}

/// Splits `template` into program + arguments and substitutes `vars` in each.
pub(crate) fn render(template: &str, vars: &Vars<'_>) -> Result<Vec<String>, RuntimeError> {
    let bad = |reason: &str| RuntimeError::BadCommand {
        command: template.to_string(),
        reason: reason.to_string(),
    };
    let words = shell_words::split(template)
        .map_err(|_| bad("a quote is not closed; balance the ' and \" quotes in `command`"))?;
    if words.is_empty() {
        return Err(bad("it is empty; set `command` to the program that runs one instance, e.g. \"python3 app.py --port {port}\""));
    }
    Ok(words.iter().map(|w| vars.substitute(w)).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            port: 20001,
            version: "v2",
            app: "web",
            instance: "web-v2-1",
        }
    }

    #[test]
    fn substitutes_every_placeholder_inside_words() {
        let argv = render(
            "./bin/server --listen=127.0.0.1:{port} --tag {app}-{version} --id {instance}",
            &vars(),
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "./bin/server",
                "--listen=127.0.0.1:20001",
                "--tag",
                "web-v2",
                "--id",
                "web-v2-1"
            ]
        );
    }

    #[test]
    fn keeps_quoted_words_and_unknown_braces() {
        let argv = render(r#"sh -c 'echo {port} | awk "{print \$1}"'"#, &vars()).unwrap();
        assert_eq!(argv, ["sh", "-c", r#"echo 20001 | awk "{print \$1}""#]);
    }

    #[test]
    fn a_value_cannot_split_a_word() {
        let v = Vars {
            version: "a b",
            ..vars()
        };
        assert_eq!(render("run {version}", &v).unwrap(), ["run", "a b"]);
    }

    #[test]
    fn rejects_empty_and_unbalanced_commands() {
        let err = render("   ", &vars()).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = render("sh -c 'echo", &vars()).unwrap_err().to_string();
        assert!(err.contains("quote is not closed"), "{err}");
    }

    #[test]
    fn env_has_baton_variables_and_templated_user_values() {
        let user = BTreeMap::from([
            ("SERVER_PORT".to_string(), "{port}".to_string()),
            ("PORT".to_string(), "1".to_string()),
        ]);
        let env = vars().env(&user);
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("SERVER_PORT"), Some("20001"));
        assert_eq!(
            get("PORT"),
            Some("20001"),
            "baton's PORT wins over the app's"
        );
        assert_eq!(get("BATON_VERSION"), Some("v2"));
        assert_eq!(get("BATON_APP"), Some("web"));
        assert_eq!(get("BATON_INSTANCE"), Some("web-v2-1"));
    }
}
