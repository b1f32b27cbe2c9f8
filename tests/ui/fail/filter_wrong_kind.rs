// An HTTP filter in a network (`tcp`) chain, and a network filter in an HTTP chain.
use proxy_core::bytes::BytesMut;
use proxy_core::tcp::{NetworkFilter, NetworkFlow};

struct Audit;

impl NetworkFilter for Audit {
    type State = ();
    fn on_read(&self, _: &mut (), _: &mut BytesMut) -> NetworkFlow {
        NetworkFlow::Continue
    }
}

proxy_core::proxy! {
    listener web {
        bind: "127.0.0.1:8080",
        http {
            filters: [Audit],
            virtual_host all { domains: ["*"], route prefix("/") => cluster(db) }
        }
    }
    listener db_proxy {
        bind: "127.0.0.1:6380",
        tcp { cluster: db, filters: [cors { allow_origins: ["*"] }] }
    }
    cluster db { endpoints: ["127.0.0.1:6379"] }
}

fn main() {}
