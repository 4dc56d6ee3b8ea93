//! The translation of one stack service, from YAML text to the app's draft and report.
#![allow(clippy::unwrap_used)]

use super::*;

/// Imports service `name` of `yaml` (a whole stack file) as stack `shop`.
fn one(yaml: &str, name: &str, network: Option<&str>) -> (Draft, Report, String) {
    let top: Value = yaml_serde::from_str(yaml).unwrap();
    let top = top.as_mapping().unwrap().clone();
    let stack = Stack {
        file: "stack.yml",
        name: "shop",
        top: &top,
    };
    let svc = top["services"][name].as_mapping().unwrap().clone();
    let (i, overlay) = translate(name, &svc, &svc, &stack, Path::new("/srv/shop"), network)
        .unwrap_or_else(|f| panic!("{}", f.message));
    (i.draft, i.report, overlay)
}

fn skipped(r: &Report) -> Vec<&str> {
    r.untranslated.iter().map(|u| u.key.as_str()).collect()
}

fn why<'a>(r: &'a Report, key: &str) -> &'a str {
    &r.untranslated.iter().find(|u| u.key == key).unwrap().why
}

#[test]
fn start_first_update_is_a_surge_and_delay_a_batch_pause() {
    let (d, r, _) = one(
        "services:\n  web:\n    image: a/web:1\n    expose: [\"80\"]\n    deploy:\n      replicas: 4\n      \
         update_config: {parallelism: 2, order: start-first, delay: 1m30s, failure_action: rollback}\n",
        "web",
        None,
    );
    let rolling = d.rolling.unwrap();
    assert_eq!(
        (rolling.max_surge.as_str(), rolling.max_unavailable.as_str()),
        ("2", "0")
    );
    assert_eq!(rolling.batch_pause.as_deref(), Some("90s"));
    assert_eq!(d.replicas, Some(4));
    assert!(skipped(&r).is_empty(), "{:?}", r.untranslated);
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("failure_action: rollback")));
}

#[test]
fn stop_first_update_is_unavailability_and_all_at_once_is_every_instance() {
    let (d, r, _) = one(
        "services:\n  web:\n    image: a/web:1\n    expose: [\"80\"]\n    deploy:\n      replicas: 3\n      \
         update_config: {parallelism: 0, failure_action: pause, monitor: 5s, max_failure_ratio: 0.2}\n",
        "web",
        None,
    );
    let rolling = d.rolling.unwrap();
    assert_eq!(
        (rolling.max_surge.as_str(), rolling.max_unavailable.as_str()),
        ("0", "\"100%\"")
    );
    assert_eq!(rolling.batch_pause, None);
    assert_eq!(
        skipped(&r),
        [
            "deploy.update_config.failure_action",
            "deploy.update_config.monitor",
            "deploy.update_config.max_failure_ratio"
        ]
    );
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("stops every instance at once")));
}

#[test]
fn no_update_config_keeps_batons_rolling_defaults() {
    let (d, r, _) = one(
        "services:\n  web:\n    image: a/web:1\n    expose: [\"80\"]\n",
        "web",
        None,
    );
    assert!(d.rolling.is_none());
    assert_eq!(d.strategy, "rolling");
    assert_eq!(d.runtime, "swarm");
    assert!(skipped(&r).is_empty());
}

#[test]
fn placement_becomes_the_swarm_table() {
    let (d, r, _) = one(
        "services:\n  web:\n    image: a/web:1\n    expose: [\"80\"]\n    deploy:\n      placement:\n        \
         constraints: [\"node.role==worker\", \"node.hostname\"]\n        \
         preferences: [{spread: node.labels.zone}, {spread: node.labels.rack}]\n        \
         max_replicas_per_node: 1\n      mode: global\n      endpoint_mode: dnsrr\n",
        "web",
        None,
    );
    assert_eq!(d.swarm.constraints, ["node.role==worker"]);
    assert_eq!(d.swarm.spread.as_deref(), Some("node.labels.zone"));
    assert_eq!(
        skipped(&r),
        [
            "deploy.placement.constraints[1]",
            "deploy.placement.preferences[1]",
            "deploy.placement.max_replicas_per_node",
            "deploy.mode"
        ]
    );
    assert!(why(&r, "deploy.mode").starts_with("global:"));
}

#[test]
fn published_ports_are_the_mesh_and_the_target_is_the_container_port() {
    let yaml = "services:\n  web:\n    image: a/web:1\n    ports:\n      - \"8080:3000\"\n      \
                - {target: 3000, published: 9090, mode: host}\n      - \"53:53/udp\"\n      - \"4000\"\n";
    let (d, r, _) = one(yaml, "web", None);
    assert_eq!(d.container_port, Some(3000));
    assert!(
        d.listen.is_none(),
        "baton's listener is not taken from the stack"
    );
    assert_eq!(
        skipped(&r),
        ["ports[0]", "ports[1]", "ports[2]", "ports[3]"]
    );
    assert!(why(&r, "ports[0]").contains("routing mesh"));
    assert!(why(&r, "ports[1]").contains("mode: host"));
    assert!(why(&r, "ports[3]").contains("one container port per app (3000)"));
}

#[test]
fn secrets_and_configs_by_name_and_the_ones_the_stack_makes_named() {
    let yaml = "services:\n  web:\n    image: a/web:1\n    expose: [\"80\"]\n    secrets:\n      - db\n      \
                - {source: tls, target: key.pem, uid: \"100\"}\n      - made\n      - nowhere\n    \
                configs:\n      - conf\n      - {source: renamed, target: /renamed}\n\
                secrets:\n  db: {external: true}\n  tls: {external: {name: tls_v2}}\n  made: {file: ./made.txt}\n\
                configs:\n  conf: {external: true}\n  renamed: {external: true, name: renamed_v3}\n";
    let (d, r, _) = one(yaml, "web", None);
    assert_eq!(d.swarm.secrets, ["db", "tls_v2"]);
    assert_eq!(d.swarm.configs, ["conf", "renamed_v3"]);
    assert_eq!(
        skipped(&r),
        [
            "secrets[1].target",
            "secrets[1].uid",
            "secrets[2]",
            "secrets[3]",
            "configs[1].target"
        ]
    );
    assert!(why(&r, "secrets[1].target").contains("/run/secrets/key.pem"));
    assert!(why(&r, "secrets[2]").contains("docker secret create shop_made ./made.txt"));
    assert!(why(&r, "secrets[3]").contains("not declared"));
    assert!(why(&r, "configs[1].target").contains("/renamed_v3"));
}

#[test]
fn the_overlay_must_be_attachable() {
    let yaml = "services:\n  web:\n    image: a/web:1\n    expose: [\"80\"]\n    networks: [front, back]\n  \
                api:\n    image: a/api:1\n    expose: [\"80\"]\n  \
                ext:\n    image: a/ext:1\n    expose: [\"80\"]\n    networks: [outside]\n\
                networks:\n  front: {driver: overlay}\n  back: {attachable: true}\n  outside: {external: true, name: edge}\n";
    let (d, r, overlay) = one(yaml, "web", None);
    assert_eq!(d.network.unwrap().0, "shop_front");
    assert_eq!(skipped(&r), ["networks.back"]);
    assert!(overlay.contains("without `attachable: true`"), "{overlay}");
    assert!(overlay.contains("docker network create --driver overlay --attachable shop_front"));
    assert!(overlay.contains("docker stack rm shop"));

    let (d, _, overlay) = one(yaml, "api", None);
    assert_eq!(d.network.unwrap().0, "shop_default");
    assert!(overlay.contains("the stack's default network"), "{overlay}");

    let (d, _, overlay) = one(yaml, "ext", None);
    assert_eq!(d.network.unwrap().0, "edge");
    assert!(overlay.contains("external"), "{overlay}");

    let (d, r, overlay) = one(yaml, "web", Some("web-net"));
    assert_eq!(d.network.unwrap().0, "web-net");
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("replaces the stack's network shop_front")));
    assert!(overlay.contains("--attachable web-net"), "{overlay}");
}

#[test]
fn keys_stack_deploy_ignores_are_named_with_swarm_reasons() {
    let (_, r, _) = one(
        "services:\n  web:\n    image: a/web:1\n    expose: [\"80\"]\n    restart: always\n    \
         depends_on: [db]\n    pull_policy: always\n    deploy:\n      restart_policy: {condition: any}\n      \
         rollback_config: {parallelism: 1}\n      resources: {reservations: {cpus: \"1\"}, limits: {pids: 10}}\n",
        "web",
        None,
    );
    assert_eq!(
        skipped(&r),
        [
            "pull_policy",
            "restart",
            "depends_on",
            "deploy.restart_policy",
            "deploy.rollback_config",
            "deploy.resources.reservations",
            "deploy.resources.limits.pids"
        ]
    );
    assert!(why(&r, "restart").contains("ignores it too"));
    assert!(why(&r, "deploy.rollback_config").contains("[apps.web.rolling]"));
}

#[test]
fn version_2_files_and_unknown_services_are_refused() {
    let top = |v: &str| -> Mapping {
        yaml_serde::from_str(&format!("version: \"{v}\"\nservices: {{}}\n")).unwrap()
    };
    let err = check_version(&top("2.4"), "f.yml").unwrap_err();
    assert!(
        err.message.contains("baton import compose f.yml"),
        "{}",
        err.message
    );
    assert!(check_version(&top("3.8"), "f.yml").is_ok());
    assert!(check_version(&top("3"), "f.yml").is_ok());
    let names = ["web".to_string(), "api".to_string()];
    let err = choose("f.yml", &names, &["db".into()]).unwrap_err();
    assert!(
        err.message.contains("choose from web, api"),
        "{}",
        err.message
    );
    let (chosen, explicit) = choose("f.yml", &names, &["api".into(), "api".into()])
        .unwrap_or_else(|f| panic!("{}", f.message));
    assert_eq!((chosen, explicit), (vec!["api".to_string()], true));
}
