proxy_core::proxy! {}

fn main() {}
