//! Shared fixtures for the benchmarks: the synthetic route tables of the scaling
//! benchmark ([`spec`]) and the naive router they are compared with ([`linear`]).

pub mod spec;

pub mod linear {
    //! What a config-driven proxy does without a routing compiler: a `Vec` of matcher
    //! structs built at start-up, tested in order until one matches.

    use http::request::Parts;
    use http::{HeaderName, HeaderValue, Method};
    use regex::Regex;

    use crate::spec::{PathSpec, RouteSpec};

    enum PathMatcher {
        Prefix(String),
        Exact(String),
        Regex(Regex),
    }

    struct Route {
        path: PathMatcher,
        methods: Vec<Method>,
        headers: Vec<(HeaderName, HeaderValue)>,
        cluster: usize,
    }

    /// The routes of one virtual host, in order.
    pub struct LinearRouter {
        routes: Vec<Route>,
    }

    /// The route a request matched: its index and cluster.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Matched {
        pub index: usize,
        pub cluster: usize,
    }

    impl LinearRouter {
        pub fn new(specs: &[RouteSpec]) -> Self {
            let routes = specs
                .iter()
                .map(|spec| Route {
                    path: match &spec.path {
                        PathSpec::Prefix(prefix) => PathMatcher::Prefix(prefix.clone()),
                        PathSpec::Exact(path) => PathMatcher::Exact(path.clone()),
                        // Anchored as the DSL does: the whole path must match.
                        PathSpec::Regex(pattern) => match Regex::new(&format!("^(?:{pattern})$")) {
                            Ok(regex) => PathMatcher::Regex(regex),
                            Err(error) => panic!("bad regex {pattern:?}: {error}"),
                        },
                    },
                    methods: spec
                        .methods
                        .iter()
                        .map(|method| match Method::from_bytes(method.as_bytes()) {
                            Ok(method) => method,
                            Err(error) => panic!("bad method {method:?}: {error}"),
                        })
                        .collect(),
                    headers: spec
                        .header
                        .iter()
                        .map(|(name, value)| {
                            (
                                HeaderName::from_static(name),
                                HeaderValue::from_static(value),
                            )
                        })
                        .collect(),
                    cluster: spec.cluster,
                })
                .collect();
            Self { routes }
        }

        /// The first route matching `request`, if any.
        pub fn route(&self, request: &Parts) -> Option<Matched> {
            let path = request.uri.path();
            self.routes
                .iter()
                .position(|route| {
                    let path_matches = match &route.path {
                        PathMatcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
                        PathMatcher::Exact(exact) => path == exact,
                        PathMatcher::Regex(regex) => regex.is_match(path),
                    };
                    path_matches
                        && (route.methods.is_empty() || route.methods.contains(&request.method))
                        && route.headers.iter().all(|(name, value)| {
                            request.headers.get_all(name).iter().any(|v| v == value)
                        })
                })
                .map(|index| Matched {
                    index,
                    cluster: self.routes[index].cluster,
                })
        }
    }
}

/// A request head for `method path` with `host: bench` and the given headers.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    match builder.body(()) {
        Ok(request) => request.into_parts().0,
        Err(error) => panic!("bench request is malformed: {error}"),
    }
}

/// The index in a generated route name (`listener/virtual_host/index`).
pub fn route_index(name: &str) -> Option<usize> {
    name.rsplit('/').next()?.parse().ok()
}
