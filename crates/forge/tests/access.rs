//! Who gets in, over real sockets: every `/_api` route and a public and a private function
//! (REST, JSON-RPC single and batch), for every combination of bind address, the address the
//! connection reached, `Host`, proxy headers, development or production mode, and credentials.
//! Each answer is exactly the expected 200/201/404 (the handler ran), 401 or 403.

use std::net::{IpAddr, SocketAddr};

use forge::config::{Mode, Role, Roles};
use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde_json::{Value, json};

#[forge::query(public)]
async fn public_echo(_ctx: &QueryContext, _args: ()) -> Result<&'static str, ForgeError> {
    Ok("hello")
}

#[forge::query]
async fn private_whoami(ctx: &QueryContext, _args: ()) -> Result<Option<String>, ForgeError> {
    Ok(ctx.auth().subject())
}

#[forge::job]
async fn access_noop(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

/// A `/_api` route: method, path, body, and its status when the handler runs.
struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    ran: u16,
}

fn routes() -> Vec<Route> {
    let get = |path, ran| Route { method: "GET", path, body: None, ran };
    let post = |path, body: Value, ran| Route { method: "POST", path, body: Some(body), ran };
    vec![
        get("/_api/overview", 200),
        get("/_api/nodes", 200),
        get("/_api/functions", 200),
        get("/_api/jobs", 200),
        get("/_api/jobs/1", 200),
        get("/_api/jobs/1/logs", 200),
        get("/_api/jobs/999999/trace", 404),
        get("/_api/job-kinds", 200),
        get("/_api/queues", 200),
        get("/_api/crons", 200),
        get("/_api/logs", 200),
        get("/_api/traces/0123456789abcdef0123456789abcdef", 404),
        get("/_api/metrics", 200),
        get("/_api/metrics/forge_http_requests_total", 200),
        post("/_api/jobs", json!({"kind": "access_noop", "args": null}), 201),
        post("/_api/jobs/retry", json!({"kind": "nothing_matches"}), 200),
        post("/_api/jobs/cancel", json!({"kind": "nothing_matches"}), 200),
        post("/_api/jobs/999999/retry", json!({}), 404),
        post("/_api/jobs/999999/cancel", json!({}), 404),
        post("/_api/jobs/999999/run", json!({}), 404),
        post("/_api/jobs/999999/delete", json!({}), 404),
        post("/_api/queues/default/pause", json!({}), 200),
        post("/_api/queues/default/resume", json!({}), 200),
        post("/_api/crons/no_such_cron/trigger", json!({}), 404),
        post("/_api/crons/no_such_cron/pause", json!({}), 404),
        post("/_api/crons/no_such_cron/resume", json!({}), 404),
        get("/_api/workflows", 200),
        get("/_api/workflows/999999", 404),
        post("/_api/workflows/999999/cancel", json!({}), 404),
        post("/_api/workflows/999999/events", json!({"name": "x"}), 404),
        post("/_api/workflows/999999/resume", json!({}), 404),
        post("/_api/workflows/999999/retry", json!({}), 404),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Credential {
    None,
    Wrong,
    User,
    AppAdmin,
    Operator,
}

/// An address of this machine that is not loopback (the one it would reach the network from).
fn outside_address() -> IpAddr {
    for target in ["192.0.2.1:9", "10.255.255.255:9", "8.8.8.8:53"] {
        if let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0")
            && socket.connect(target).is_ok()
            && let Ok(local) = socket.local_addr()
            && !local.ip().is_loopback()
            && !local.ip().is_unspecified()
        {
            return local.ip();
        }
    }
    panic!("this machine has no address besides loopback: the access matrix needs one");
}

async fn start(db: &TestDatabase, bind: &str, mode: Mode) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Gateway, Role::Function]).expect("roles");
    config.project.mode = mode;
    config.gateway.max_concurrent_requests = std::num::NonZeroUsize::new(10_000).expect("nonzero");
    let listener = std::net::TcpListener::bind(format!("{bind}:0")).expect("bind");
    Forge::builder()
        .config(config)
        .listener(listener)
        .job::<AccessNoop>()
        .build()
        .expect("build")
        .start()
        .await
        .expect("start")
}

/// The status a JSON-RPC answer stands for: 200 for a result, else its error's HTTP twin.
fn rpc_status(answer: &Value) -> u16 {
    if answer.get("result").is_some() {
        return 200;
    }
    match answer["error"]["code"].as_i64() {
        Some(-32001) => 401,
        Some(-32003) => 403,
        other => panic!("unexpected JSON-RPC answer {other:?}: {answer}"),
    }
}

#[tokio::test]
async fn every_route_answers_exactly_who_may_call_it() {
    let db = TestDatabase::new().await.expect("db");
    AccessNoop::dispatch(db.pool(), ()).await.expect("job 1");
    let keys = ApiKeys::new(db.pool().clone());
    let key = |name: &str, role: &str| {
        let mut key = NewApiKey::named(name);
        key.roles = vec![role.to_owned()];
        key
    };
    let user = keys.create(key("user", "user")).await.expect("key").key;
    let app_admin = keys.create(key("app-admin", "admin")).await.expect("key").key;
    let operator = keys.create(key("operator", "forge:admin")).await.expect("key").key;

    let loopback_node = start(&db, "127.0.0.1", Mode::Development).await;
    let any_node = start(&db, "0.0.0.0", Mode::Development).await;
    let production_node = start(&db, "127.0.0.1", Mode::Production).await;
    let outside = outside_address();
    let port = |node: &RunningForge| node.local_addr().expect("gateway").port();
    // (what the connection is, the address it reaches, development mode, whether it is local)
    let listeners: Vec<(&str, SocketAddr, bool, bool)> = vec![
        ("bound 127.0.0.1, reached on 127.0.0.1", ([127, 0, 0, 1], port(&loopback_node)).into(), true, true),
        ("bound 0.0.0.0, reached on 127.0.0.1", ([127, 0, 0, 1], port(&any_node)).into(), true, true),
        ("bound 0.0.0.0, reached on the outside address", (outside, port(&any_node)).into(), true, false),
        ("production, bound 127.0.0.1", ([127, 0, 0, 1], port(&production_node)).into(), false, true),
    ];
    let hosts = |addr: SocketAddr| {
        [
            (format!("localhost:{}", addr.port()), true),
            (format!("127.0.0.1:{}", addr.port()), true),
            (format!("[::1]:{}", addr.port()), true),
            ("forge.example.com".to_owned(), false),
        ]
    };
    let proxies: [Option<(&str, &str)>; 3] =
        [None, Some(("x-forwarded-for", "203.0.113.9")), Some(("forwarded", "for=203.0.113.9"))];
    let credentials = [
        (Credential::None, None),
        (Credential::Wrong, Some("forge_nope_nope")),
        (Credential::User, Some(user.as_str())),
        (Credential::AppAdmin, Some(app_admin.as_str())),
        (Credential::Operator, Some(operator.as_str())),
    ];
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let routes = routes();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (listener, addr, development, local_connection) in &listeners {
        for (host, loopback_host) in hosts(*addr) {
            for proxy in proxies {
                for (credential, key) in credentials {
                    let open = *development && *local_connection && loopback_host && proxy.is_none();
                    let send = |method: &str, path: &str, body: Option<&Value>| {
                        let url = format!("http://{addr}{path}");
                        let mut request = match method {
                            "GET" => client.get(&url),
                            _ => client.post(&url).header("x-forge-csrf", "1").json(body.unwrap_or(&Value::Null)),
                        };
                        request = request.header("host", &host);
                        if let Some((name, value)) = proxy {
                            request = request.header(name, value);
                        }
                        if let Some(key) = key {
                            request = request.header("x-api-key", key);
                        }
                        request.send()
                    };
                    let case = format!("{listener}; Host {host}; proxy {proxy:?}; {credential:?}");
                    for route in &routes {
                        let expected = match credential {
                            _ if open => route.ran,
                            Credential::None | Credential::Wrong => 401,
                            Credential::User | Credential::AppAdmin => 403,
                            Credential::Operator => route.ran,
                        };
                        let response = send(route.method, route.path, route.body.as_ref()).await.expect("response");
                        let status = response.status().as_u16();
                        if status != expected {
                            let body = response.text().await.unwrap_or_default();
                            wrong.push(format!(
                                "{} {}: {status}, expected {expected} ({case}) {body}",
                                route.method, route.path
                            ));
                        }
                        checked += 1;
                    }

                    // Functions: the same for every connection, Host and proxy header.
                    let (public, private) = match credential {
                        Credential::Wrong => (401, 401),
                        Credential::None => (200, 401),
                        _ => (200, 200),
                    };
                    for (function, expected) in [("public_echo", public), ("private_whoami", private)] {
                        let path = format!("/rpc/{function}");
                        let status = send("POST", &path, None).await.expect("response").status().as_u16();
                        if status != expected {
                            wrong.push(format!("REST {function}: {status}, expected {expected} ({case})"));
                        }
                        let call = json!({"jsonrpc": "2.0", "id": 1, "method": function});
                        let response = send("POST", "/rpc", Some(&call)).await.expect("response");
                        let http = response.status().as_u16();
                        let answer: Value = response.json().await.unwrap_or(Value::Null);
                        let status = if http == 200 { rpc_status(&answer) } else { http };
                        if status != expected {
                            wrong.push(format!("JSON-RPC {function}: {status}, expected {expected} ({case}) {answer}"));
                        }
                        checked += 2;
                    }
                    let batch = json!([
                        {"jsonrpc": "2.0", "id": 1, "method": "public_echo"},
                        {"jsonrpc": "2.0", "id": 2, "method": "private_whoami"},
                    ]);
                    let response = send("POST", "/rpc", Some(&batch)).await.expect("response");
                    let http = response.status().as_u16();
                    let answers: Value = response.json().await.unwrap_or(Value::Null);
                    let statuses: Vec<u16> = match answers.as_array() {
                        Some(answers) if http == 200 => answers.iter().map(rpc_status).collect(),
                        _ => vec![http, http],
                    };
                    if statuses != [public, private] {
                        wrong.push(format!(
                            "JSON-RPC batch: {statuses:?}, expected {:?} ({case}) {answers}",
                            [public, private]
                        ));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} answers were wrong:\n{}", wrong.len(), wrong.join("\n"));
    assert!(checked > 6000, "{checked}");
    for node in [loopback_node, any_node, production_node] {
        node.stop().await.expect("stop");
    }
}
