//! A client metadata fetch never goes through a proxy named in the environment: through a proxy
//! the target's name is resolved by the proxy, past the gateway's public-address check. Its own
//! test binary, because it sets process-wide environment variables.

use std::net::TcpListener;
use std::time::{Duration, Instant};

#[test]
fn a_proxy_in_the_environment_does_not_carry_a_metadata_fetch_past_the_address_check() {
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind a stand-in proxy");
    proxy.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", proxy.local_addr().expect("address"));
    for name in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        std::env::set_var(name, &url);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    let answer = mcp_gateway::oauth::cimd::fetch_client("https://127.0.0.2/client.json");
    assert_eq!(
        answer.expect_err("a loopback document is refused"),
        mcp_gateway::oauth::cimd::FETCH_REFUSED
    );
    // Had the fetch used the proxy, it would have connected to it.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        if let Ok((_, from)) = proxy.accept() {
            panic!("the fetch went to the proxy (connection from {from})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
