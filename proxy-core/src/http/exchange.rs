use std::fmt::Write as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::body::{BodyOutcome, BufferedBody, Buffering, RequestBodyFilter};
use super::filtered::{Exchange, FilteredBody, RequestBytes};
use super::headers::{into_upstream_form, prepare_response, sanitize_request};
use super::local_reply::plain_text;
use super::retry::{Attempt, Clock, RouteWait, wait_head};
use super::timer::RouteTimer;
use super::{IncomingBody, LocalReply, RequestBody, ResponseBody};
use super::{grpc, mirror};
use crate::cluster::{Cluster, Endpoint, RetryPermit, Selection, UpstreamError};
use crate::filter::{Flow, HttpFilter, RequestInfo};
use crate::future::InlineOrBoxed;
use crate::listener::HttpOptions;
use crate::route::{
    DirectResponse, Mirror, Redirect, RetryPolicy, Route, RouteAction, RoutePolicy, request_host,
};
use crate::stats::{GaugeGuard, ListenerStats};
use crate::upstream::h1::UpstreamUpgrade;

/// What the proxy knows about the downstream connection a request arrived on. Built
/// once per connection by the accept loop.
#[derive(Debug)]
pub struct Downstream {
    /// The client's IP, pre-formatted once per connection for `x-forwarded-for`.
    /// `None` for Unix-socket clients, which have no IP to report, and on a listener
    /// with `skip_xff_append`.
    pub(crate) peer: Option<HeaderValue>,
    pub(crate) client_ip: Option<IpAddr>,
    /// `http` or `https`: the scheme this proxy was reached over.
    pub(crate) scheme: &'static str,
    /// `x-request-id` is generated for a request without one.
    pub(crate) generate_request_id: bool,
    pub(crate) listener: &'static str,
    pub(crate) stats: Arc<ListenerStats>,
    /// The route timer this connection's requests share.
    pub(crate) route_timer: RouteTimer,
}

impl Downstream {
    #[cfg(test)]
    pub(crate) fn new(
        client_ip: Option<IpAddr>,
        listener: &'static str,
        stats: Arc<ListenerStats>,
    ) -> Self {
        Self::of_listener(client_ip, listener, HttpOptions::default(), stats)
    }

    pub(crate) fn of_listener(
        client_ip: Option<IpAddr>,
        listener: &'static str,
        options: HttpOptions,
        stats: Arc<ListenerStats>,
    ) -> Self {
        let peer = client_ip
            .filter(|_| !options.skip_xff_append)
            .and_then(|ip| HeaderValue::try_from(ip.to_string()).ok());
        Self {
            peer,
            client_ip,
            scheme: "http",
            generate_request_id: options.generate_request_id,
            listener,
            stats,
            route_timer: RouteTimer::default(),
        }
    }
}

/// One request through `chain` and `route`'s action: the whole HTTP connection-manager
/// path. Never fails: every problem becomes a documented local reply.
///
/// Generic over the chain, so each distinct chain of a topology gets its own copy with
/// every hook inlined; the generated pipeline picks the copy by the route's chain index.
///
/// What needs no waiting (stats, the hop-by-hop rules) is done here, at once; the rest
/// is [`Exchanging`], a state machine of three stages.
pub fn exchange<C: HttpFilter>(
    chain: &'static C,
    downstream: &Downstream,
    route: Route<'static>,
    mut parts: Parts,
    body: IncomingBody,
) -> impl Future<Output = Response<ResponseBody>> {
    let stats = &downstream.stats;
    stats.downstream_rq_total.inc();
    let active = GaugeGuard::new(&stats.downstream_rq_active);
    let info = RequestInfo {
        client_ip: downstream.client_ip,
        listener: downstream.listener,
        route: route.name,
        start: Instant::now(),
    };
    let is_head = parts.method == http::Method::HEAD;
    let grpc = grpc::is_grpc(&parts.headers);
    let upgrade = Upgrade::requested(&mut parts);
    sanitize_request(&mut parts, downstream);
    let request = Filtering {
        state: C::State::default(),
        info,
        request: Received {
            parts,
            body,
            upgrade,
            action: route.action,
        },
    };
    let stage = if C::IS_NOOP {
        // No request filter to wait for: the route's action starts at once.
        Stage::Upstream {
            upstream: act(chain, downstream, Flow::Continue, request.request),
            state: request.state,
            info,
        }
    } else {
        Stage::Request {
            filters: request.filter(chain),
        }
    };
    Exchanging {
        stage,
        chain,
        downstream,
        _active: active,
        is_head,
        grpc,
        act: act::<C>,
        respond: respond::<C>,
    }
}

pin_project_lite::pin_project! {
    /// [`exchange`]'s future.
    ///
    /// Written by hand rather than as one `async` block: a block's captures and the
    /// locals it keeps across an `.await` live in every state of its future, so the
    /// request head and body it started with (264 bytes), and the decision they were
    /// moved into, would sit beside the upstream exchange in every request in flight
    /// (500 of them under `h2load -c 50 -m 10`). Each stage holds only what it still
    /// needs. `act` and `respond` are the functions that build the next stage, taken as
    /// (zero-sized) values because their futures' types have no names.
    struct Exchanging<'d, C: HttpFilter, Filters, Upstream, Responding, Act, Respond> {
        #[pin]
        stage: Stage<C::State, Filters, Upstream, Responding>,
        chain: &'static C,
        downstream: &'d Downstream,
        _active: GaugeGuard<'d>,
        is_head: bool,
        grpc: bool,
        act: Act,
        respond: Respond,
    }
}

pin_project_lite::pin_project! {
    #[project = StageProjection]
    enum Stage<State, Filters, Upstream, Responding> {
        /// The request filters run on the request head.
        Request { #[pin] filters: Filters },
        /// The route's action: an exchange with an upstream, or an answer already.
        Upstream { #[pin] upstream: Upstream, state: State, info: RequestInfo },
        /// The response filters run on the response head.
        Response { #[pin] filters: Responding },
    }
}

impl<'d, C, Filters, Upstream, Responding, Act, Respond> Future
    for Exchanging<'d, C, Filters, Upstream, Responding, Act, Respond>
where
    C: HttpFilter,
    Filters: Future<Output = Filtered<C::State>>,
    Upstream: Future<Output = Outcome>,
    Responding: Future<Output = Response<ResponseBody>>,
    Act: Fn(&'static C, &'d Downstream, Flow, Received) -> Upstream,
    Respond: Fn(&'static C, &'d ListenerStats, Responded<C::State>) -> Responding,
{
    type Output = Response<ResponseBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.stage.as_mut().project() {
                StageProjection::Request { filters } => {
                    let (
                        flow,
                        Filtering {
                            state,
                            info,
                            request,
                        },
                    ) = ready!(filters.poll(cx));
                    let upstream = (this.act)(this.chain, this.downstream, flow, request);
                    this.stage.set(Stage::Upstream {
                        upstream,
                        state,
                        info,
                    });
                }
                StageProjection::Upstream {
                    upstream,
                    state,
                    info,
                } => {
                    let outcome = ready!(upstream.poll(cx));
                    let stats = &this.downstream.stats;
                    if C::IS_NOOP {
                        // No response filter to wait for, or to see the body.
                        let response = outcome.into_response(*this.grpc);
                        let (head, body) = response.into_parts();
                        let body = answered(stats, &head, body, *this.is_head);
                        return Poll::Ready(Response::from_parts(head, body));
                    }
                    let responded = Responded {
                        state: std::mem::take(state),
                        info: *info,
                        outcome,
                        is_head: *this.is_head,
                        grpc: *this.grpc,
                    };
                    let filters = (this.respond)(this.chain, stats, responded);
                    this.stage.set(Stage::Response { filters });
                }
                StageProjection::Response { filters } => return filters.poll(cx),
            }
        }
    }
}

/// A request on its way through the request filters.
struct Filtering<State> {
    state: State,
    info: RequestInfo,
    request: Received,
}

/// The request filters' decision and the request as they left it.
type Filtered<State> = (Flow, Filtering<State>);

impl<State> Filtering<State> {
    /// Runs the request filters. The block owns the request while they run and hands it
    /// back: nothing of it stays behind in a later stage.
    fn filter<C>(self, chain: &'static C) -> impl Future<Output = Filtered<State>> + use<C, State>
    where
        C: HttpFilter<State = State>,
    {
        let mut filtering = self;
        async move {
            let Self {
                state,
                info,
                request,
            } = &mut filtering;
            let flow = chain
                .on_request_headers(state, &mut request.parts, info)
                .await;
            (flow, filtering)
        }
    }
}

/// The request as it arrived, less its hop-by-hop headers, and the route's action for it.
struct Received {
    parts: Parts,
    body: IncomingBody,
    /// Taken before the hop-by-hop rules removed `Upgrade` and `Connection`.
    upgrade: Option<Upgrade>,
    action: RouteAction<'static>,
}

/// What the response filters start from.
struct Responded<State> {
    state: State,
    info: RequestInfo,
    outcome: Outcome,
    is_head: bool,
    grpc: bool,
}

/// The last stage: the response filters, then the response the client gets.
///
/// Not an `async fn`, which would copy its argument into a local beside it; the block
/// works on its capture's fields in place.
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
fn respond<'d, C: HttpFilter>(
    chain: &'static C,
    stats: &'d ListenerStats,
    mut responded: Responded<C::State>,
) -> impl Future<Output = Response<ResponseBody>> + use<'d, C> {
    async move {
        let Outcome {
            response,
            flags,
            upstream,
            request_bytes,
            proxy_error,
            deadline_exceeded,
        } = responded.outcome;
        let response =
            Outcome::first_response(response, responded.grpc, proxy_error, deadline_exceeded);
        let (mut head, mut body) = response.into_parts();
        if let Flow::Respond(replacement) = chain
            .on_response_headers(&mut responded.state, &mut head, &responded.info)
            .await
        {
            (head, body) = replacement.into_parts();
        }
        let body = answered(stats, &head, body, responded.is_head);
        let exchange = Exchange {
            status: head.status,
            response_flags: flags,
            upstream,
            request_bytes,
        };
        let body = FilteredBody::new(body, chain, responded.state, responded.info, exchange);
        Response::from_parts(head, ResponseBody::filtered(body))
    }
}

/// The body the client gets with `head`, its status counted.
fn answered(
    stats: &ListenerStats,
    head: &http::response::Parts,
    body: ResponseBody,
    is_head: bool,
) -> ResponseBody {
    stats.count_status(head.status.as_u16());
    if is_head {
        // Local replies carry a body and `content-length`. HEAD keeps the length but must
        // not send the bytes; hyper drops them on HTTP/1.1 but would send them as DATA on
        // HTTP/2, which the client then resets. (A forwarded HEAD response's body is
        // already empty.)
        return ResponseBody::empty();
    }
    body
}

/// The flag a filter put on its local reply (`RL`, `FI`, ...), as a `'static` string for
/// the summary; unknown text is not trusted into a log.
fn response_flags(response: &Response<ResponseBody>) -> &'static str {
    const KNOWN: &[&str] = &[
        "NR", "UH", "UF", "UC", "UT", "UO", "RL", "FI", "DI", "UAEX", "DPE",
    ];
    let Some(value) = response.headers().get(super::RESPONSE_FLAGS_HEADER) else {
        return "";
    };
    KNOWN
        .iter()
        .find(|flag| value.as_bytes() == flag.as_bytes())
        .copied()
        .unwrap_or("")
}

/// A response and what produced it.
struct Outcome {
    response: Response<ResponseBody>,
    flags: &'static str,
    upstream: Option<&'static Endpoint>,
    request_bytes: RequestBytes,
    /// The proxy answered in place of an upstream or an action (a local reply, a filter's
    /// refusal): for a gRPC request it becomes a gRPC status.
    proxy_error: bool,
    /// The route timeout that fired was the request's own `grpc-timeout`.
    deadline_exceeded: bool,
}

impl Outcome {
    /// The response as the response filters first see it.
    fn into_response(self, grpc: bool) -> Response<ResponseBody> {
        Self::first_response(
            self.response,
            grpc,
            self.proxy_error,
            self.deadline_exceeded,
        )
    }

    fn first_response(
        response: Response<ResponseBody>,
        grpc: bool,
        proxy_error: bool,
        deadline_exceeded: bool,
    ) -> Response<ResponseBody> {
        if grpc && proxy_error {
            // As Envoy does for local replies: gRPC clients read `grpc-status`, not the HTTP
            // status, so the filters (and the client) see a gRPC response.
            return grpc::into_grpc_reply(response, deadline_exceeded);
        }
        response
    }

    fn local(response: Response<ResponseBody>, flags: &'static str) -> Self {
        Self {
            response,
            flags,
            upstream: None,
            request_bytes: RequestBytes::Known(0),
            proxy_error: false,
            deadline_exceeded: false,
        }
    }

    /// A reply the proxy made instead of an answer (see [`Outcome::proxy_error`]).
    fn refusal(response: Response<ResponseBody>) -> Self {
        let flags = response_flags(&response);
        Self {
            proxy_error: true,
            ..Self::local(response, flags)
        }
    }

    fn reply(reply: LocalReply, stats: &ListenerStats) -> Self {
        Self {
            proxy_error: true,
            ..Self::local(local_reply(reply, stats), reply.flag())
        }
    }
}

/// The proxy's answer in place of an upstream's, counted under its listener stat.
pub(crate) fn local_reply(reply: LocalReply, stats: &ListenerStats) -> Response<ResponseBody> {
    let counter = match reply {
        LocalReply::NoRoute => &stats.no_route,
        LocalReply::NoHealthyUpstream => &stats.no_healthy_upstream,
        LocalReply::ConnectFailure => &stats.upstream_connect_fail,
        LocalReply::UpstreamReset => &stats.upstream_reset,
        LocalReply::UpstreamTimeout => &stats.upstream_timeout,
        LocalReply::UpstreamOverflow => &stats.upstream_overflow,
    };
    counter.inc();
    reply.into_response()
}

/// The route's action under way: an answer already, an exchange with an upstream run
/// inline, or one that retries or mirrors (boxed: see [`forward`]).
type Acting<Once, Replayed> = InlineOrBoxed<Outcome, Once, Replayed>;

/// Carries out the route's action, unless a request filter answered (`flow`).
///
/// Inlined, as is [`forward`], into the stage that keeps what they return: returned by
/// value from a call, the exchange's future (≈ 1.8 KB) would be copied at each return
/// (360 more instructions per HTTP/2 request, measured with callgrind).
#[inline(always)]
fn act<'d, C: HttpFilter>(
    chain: &'static C,
    downstream: &'d Downstream,
    flow: Flow,
    request: Received,
) -> Acting<impl Future<Output = Outcome> + use<'d, C>, impl Future<Output = Outcome> + use<'d, C>>
{
    let Received {
        parts,
        body,
        upgrade,
        action,
    } = request;
    if let Flow::Respond(response) = flow {
        return Acting::done(Outcome::refusal(response));
    }
    // An upgrade goes only where a route allows it (Envoy's per-route `upgrade_configs`);
    // anywhere else it is refused rather than silently served as a plain request.
    if let Some(requested) = &upgrade {
        let allowed = match action {
            RouteAction::Forward(cluster, policy) => {
                policy.allows_upgrade(requested.protocol.as_bytes())
                    && cluster.options().protocol == crate::cluster::UpstreamProtocol::Http1
            }
            RouteAction::Split(targets, policy) => {
                policy.allows_upgrade(requested.protocol.as_bytes())
                    && targets.weighted().iter().all(|(cluster, _)| {
                        cluster.options().protocol == crate::cluster::UpstreamProtocol::Http1
                    })
            }
            _ => false,
        };
        if !allowed {
            downstream.stats.downstream_rq_ws_on_non_ws_route.inc();
            return Acting::done(Outcome::refusal(plain_text(
                StatusCode::FORBIDDEN,
                "upgrade not allowed on this route\n",
            )));
        }
    }
    match action {
        RouteAction::Forward(cluster, policy) => forward(
            chain,
            cluster,
            policy,
            &[],
            parts,
            body,
            downstream,
            upgrade,
        ),
        // Retries stay within the cluster drawn here.
        RouteAction::Split(targets, policy) => match targets.choose() {
            Some(cluster) => {
                let mirrors = targets.mirrors();
                forward(
                    chain, cluster, policy, mirrors, parts, body, downstream, upgrade,
                )
            }
            None => Acting::done(Outcome::reply(
                LocalReply::NoHealthyUpstream,
                &downstream.stats,
            )),
        },
        RouteAction::Direct(direct) => Acting::done(Outcome::local(direct_response(direct), "")),
        RouteAction::Redirect(redirect) => Acting::done(Outcome::local(
            redirect_response(redirect, &parts, downstream),
            "",
        )),
        RouteAction::NoRoute => {
            Acting::done(Outcome::reply(LocalReply::NoRoute, &downstream.stats))
        }
    }
}

/// Proxies the request to `cluster`: one attempt, or several under the route's retry
/// policy, plus fire-and-forget copies to `mirrors`. See [`super::retry`] and
/// [`super::mirror`] for the semantics.
#[allow(clippy::too_many_arguments)] // called only from `act`; a struct would only rename them
#[inline(always)] // see `act`
fn forward<'d, C: HttpFilter>(
    chain: &'static C,
    cluster: &'static Cluster,
    policy: &'static RoutePolicy,
    mirrors: &'static [Mirror],
    mut parts: Parts,
    body: IncomingBody,
    downstream: &'d Downstream,
    upgrade: Option<Upgrade>,
) -> Acting<impl Future<Output = Outcome> + use<'d, C>, impl Future<Output = Outcome> + use<'d, C>>
{
    // Chosen on the request as received (before the upstream form).
    let Some(selection) = cluster.select(&parts, downstream.client_ip, &[]) else {
        return Acting::done(Outcome::reply(
            LocalReply::NoHealthyUpstream,
            &downstream.stats,
        ));
    };
    // A gRPC caller's own deadline bounds the wait when it is the shorter one (only for
    // gRPC requests, as Envoy: the header means nothing to other protocols).
    let deadline = grpc::is_grpc(&parts.headers)
        .then(|| grpc::timeout(&parts.headers))
        .flatten();
    let (timeout, deadline_bound) = match (policy.timeout, deadline) {
        (Some(route), Some(deadline)) if deadline < route => (Some(deadline), true),
        (None, Some(deadline)) => (Some(deadline), true),
        (route, _) => (route, false),
    };
    into_upstream_form(&mut parts, cluster.options().protocol);
    if let Some(upgrade) = &upgrade {
        upgrade.restore_request_headers(&mut parts.headers);
    }
    let body_filter: Option<&'static dyn RequestBodyFilter> =
        if C::IS_NOOP { None } else { Some(chain) };
    let (body, body_outcome) = RequestBody::new(body, body_filter);

    // Retries and mirrors need the request more than once; an upgrade is never repeated.
    let retry = policy.retry.as_ref().filter(|_| upgrade.is_none());
    let per_try = retry.and_then(|retry| retry.per_try_timeout);
    let retry = retry.filter(|retry| retry.num_retries > 0);
    let mirrored = match &upgrade {
        None if !mirrors.is_empty() => mirror::draw(mirrors),
        _ => Vec::new(),
    };
    let upstream = Upstream {
        cluster,
        policy,
        downstream,
        timeout,
        deadline_bound,
        per_try,
    };
    if retry.is_none() && mirrored.is_empty() {
        // The common path: sent once, the body streamed, nothing kept.
        let request = Request::from_parts(parts, body);
        return Acting::inline(upstream.attempts(
            selection,
            request,
            body_outcome,
            None,
            None,
            upgrade,
        ));
    }
    // Boxed: inline, the body buffer's future and the replay kept beside a second
    // `attempts` would make every request's future ≈ 600 bytes larger (each HTTP/2
    // stream in flight holds one), for the requests that retry or mirror.
    let replayed = Replayed {
        selection,
        parts,
        body,
        body_outcome,
        retry,
        mirrored,
        upgrade,
    };
    Acting::boxed(upstream.replayed(replayed))
}

/// A request [`forward`] may send more than once: to retry it or to mirror it.
struct Replayed {
    selection: Selection<'static>,
    parts: Parts,
    body: RequestBody,
    body_outcome: Option<oneshot::Receiver<BodyOutcome>>,
    retry: Option<&'static RetryPolicy>,
    mirrored: Vec<&'static Cluster>,
    upgrade: Option<Upgrade>,
}

/// What every attempt of one forwarded request shares.
#[derive(Clone, Copy)]
struct Upstream<'d> {
    cluster: &'static Cluster,
    policy: &'static RoutePolicy,
    downstream: &'d Downstream,
    /// The route timeout, or the gRPC caller's deadline when that is shorter.
    timeout: Option<Duration>,
    /// `timeout` is the gRPC caller's deadline.
    deadline_bound: bool,
    per_try: Option<Duration>,
}

impl Upstream<'_> {
    /// [`forward`] for a request that may be retried or mirrored: its body is read into
    /// memory first (up to the retry policy's limit), then the copies go out and the
    /// request is attempted.
    async fn replayed(self, request: Replayed) -> Outcome {
        let (policy, downstream) = (self.policy, self.downstream);
        let (selection, retry, upgrade) = (request.selection, request.retry, request.upgrade);
        let limit = retry.map_or(RetryPolicy::DEFAULT_MAX_BUFFERED_BODY, |retry| {
            retry.max_buffered_body
        });
        match keep_for_replay(request.parts, request.body, request.body_outcome, limit).await {
            Kept::Replay(replay) => {
                for mirror in request.mirrored {
                    let copy = super::retry::copy_parts(&replay.parts);
                    let body = replay.body.clone();
                    mirror::spawn(mirror, copy, body, downstream.client_ip, policy.timeout);
                }
                let request = replay.request();
                self.attempts(selection, request, None, Some(&replay), retry, upgrade)
                    .await
            }
            Kept::Stream(request, body_outcome) => {
                tracing::debug!(
                    route = policy.name,
                    limit,
                    "request body over the replay buffer: streamed, not retried or mirrored"
                );
                self.attempts(selection, request, body_outcome, None, None, upgrade)
                    .await
            }
            Kept::Rejected(response) => Outcome::refusal(response),
        }
    }

    /// Sends `request` to `selection`, and again (rebuilt from `replay`) while the
    /// attempt's outcome is retriable under `retry` and retries are left. A request
    /// without `replay` is tried once. `body_outcome` reports a streamed body's end.
    ///
    /// Not an `async fn`, which would copy its arguments into locals beside them.
    #[allow(clippy::manual_async_fn)]
    fn attempts(
        self,
        mut selection: Selection<'static>,
        mut request: Request<RequestBody>,
        mut body_outcome: Option<oneshot::Receiver<BodyOutcome>>,
        replay: Option<&Replay>,
        retry: Option<&RetryPolicy>,
        upgrade: Option<Upgrade>,
    ) -> impl Future<Output = Outcome> {
        async move {
            let cluster = self.cluster;
            let retry = retry.zip(replay);
            let mut clock = Clock::new(self.timeout);
            let mut tried: Vec<&'static Endpoint> = Vec::new();
            let mut retries = 0;
            // Held while a retry is in flight: the cluster's retry limit counts it.
            let mut _permit: Option<RetryPermit<'static>> = None;
            loop {
                let endpoint = selection.endpoint;
                let wait = {
                    // Pinned here and lent to `wait_head`: moved into it, the send future
                    // would be stored twice over in this request's future.
                    let sent = std::pin::pin!(cluster.send(endpoint, request));
                    let timer = &self.downstream.route_timer;
                    wait_head(sent, body_outcome.take(), &mut clock, self.per_try, timer).await
                };
                let (attempt, request_bytes) = match wait {
                    RouteWait::Response(Ok(response), bytes) => {
                        (Attempt::Response(response), bytes)
                    }
                    RouteWait::Response(Err(error), bytes) => (Attempt::Failed(error), bytes),
                    RouteWait::Rejected(response) => return Outcome::refusal(response),
                    RouteWait::TimedOut(bytes) => {
                        // Dropping the send closes that upstream connection: it has a request
                        // in flight whose response nobody will read.
                        cluster.record_timeout(endpoint);
                        let mut outcome = self.route_timeout();
                        outcome.upstream = Some(endpoint);
                        outcome.request_bytes = replayed_bytes(replay, bytes);
                        return outcome;
                    }
                    RouteWait::PerTryTimedOut(bytes) => {
                        cluster.stats().upstream_rq_per_try_timeout.inc();
                        cluster.record_timeout(endpoint);
                        tracing::debug!(
                            route = self.policy.name,
                            cluster = cluster.name(),
                            endpoint = %endpoint.address(),
                            per_try = ?self.per_try,
                            "upstream per-try timeout"
                        );
                        (Attempt::PerTryTimeout, bytes)
                    }
                };
                let request_bytes = replayed_bytes(replay, request_bytes);
                let retry = match retry.filter(|(policy, _)| attempt.is_retriable(policy)) {
                    None => {
                        if retries > 0 && matches!(attempt, Attempt::Response(_)) {
                            cluster.stats().upstream_rq_retry_success.inc();
                        }
                        None
                    }
                    Some((policy, _)) if retries >= policy.num_retries => {
                        cluster.stats().upstream_rq_retry_limit_exceeded.inc();
                        None
                    }
                    Some(retry) => {
                        // The previous retry is over; the next needs its own permit
                        // (`try_retry` counts the overflow when there is none).
                        _permit = None;
                        _permit = cluster.try_retry();
                        _permit.as_ref().map(|_| retry)
                    }
                };
                let Some((policy, replay)) = retry else {
                    return self.attempt_outcome(attempt, selection, request_bytes, upgrade);
                };
                // A failed response is discarded with its body (which closes its connection).
                drop(attempt);
                tried.push(endpoint);
                retries += 1;
                cluster.stats().upstream_rq_retry.inc();
                if !clock.backoff(policy.backoff(retries)).await {
                    // The route timeout fired during the backoff: no attempt is in flight.
                    let mut outcome = self.route_timeout();
                    outcome.request_bytes = RequestBytes::Known(replay.bytes());
                    return outcome;
                }
                let client_ip = self.downstream.client_ip;
                selection = match cluster.select(&replay.parts, client_ip, &tried) {
                    Some(selection) => selection,
                    None => {
                        return Outcome::reply(
                            LocalReply::NoHealthyUpstream,
                            &self.downstream.stats,
                        );
                    }
                };
                tracing::debug!(
                    route = self.policy.name,
                    cluster = cluster.name(),
                    retry = retries,
                    endpoint = %selection.endpoint.address(),
                    "retrying request"
                );
                request = replay.request();
            }
        }
    }

    /// The route timeout fired (504 `UT`).
    fn route_timeout(&self) -> Outcome {
        self.cluster.stats().upstream_rq_timeout.inc();
        tracing::debug!(
            route = self.policy.name,
            cluster = self.cluster.name(),
            timeout = ?self.timeout,
            "upstream timeout"
        );
        Outcome {
            deadline_exceeded: self.deadline_bound,
            ..Outcome::reply(LocalReply::UpstreamTimeout, &self.downstream.stats)
        }
    }

    /// The client's answer from the attempt that ends the request.
    fn attempt_outcome(
        &self,
        attempt: Attempt,
        selection: Selection<'static>,
        request_bytes: RequestBytes,
        upgrade: Option<Upgrade>,
    ) -> Outcome {
        let (route, cluster) = (self.policy.name, self.cluster.name());
        let stats = &self.downstream.stats;
        let mut outcome = match attempt {
            Attempt::Response(mut response) => {
                let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                match upgrade {
                    Some(upgrade) if switched => upgrade.tunnel(&mut response, stats),
                    _ => prepare_response(&mut response),
                }
                // Session persistence: tell the client which endpoint to come back to.
                if let Some((name, value)) = selection.session {
                    let headers = response.headers_mut();
                    if name == header::SET_COOKIE {
                        headers.append(name, value);
                    } else {
                        headers.insert(name, value);
                    }
                }
                Outcome::local(response, "")
            }
            Attempt::Failed(UpstreamError::Connect(error)) => {
                tracing::debug!(route, cluster, %error, "upstream connect failure");
                Outcome::reply(LocalReply::ConnectFailure, stats)
            }
            Attempt::Failed(UpstreamError::Reset(error)) => {
                tracing::debug!(route, cluster, %error, "upstream reset");
                Outcome::reply(LocalReply::UpstreamReset, stats)
            }
            Attempt::Failed(UpstreamError::Downstream(error)) => {
                tracing::debug!(route, cluster, %error, "request body failed");
                Outcome::local(invalid_body(), "")
            }
            Attempt::Failed(UpstreamError::Overflow(breaker)) => {
                tracing::debug!(route, cluster, breaker, "upstream overflow");
                Outcome::reply(LocalReply::UpstreamOverflow, stats)
            }
            Attempt::PerTryTimeout => Outcome::reply(LocalReply::UpstreamTimeout, stats),
        };
        outcome.upstream = Some(selection.endpoint);
        outcome.request_bytes = request_bytes;
        outcome
    }
}

/// The request bytes of an attempt: a replayed body's length is known up front.
fn replayed_bytes(replay: Option<&Replay>, bytes: RequestBytes) -> RequestBytes {
    match replay {
        Some(replay) => RequestBytes::Known(replay.bytes()),
        None => bytes,
    }
}

/// A request kept so it can be sent again: its head (upstream form) and its body, if it
/// has one.
struct Replay {
    parts: Parts,
    body: Option<Arc<BufferedBody>>,
}

impl Replay {
    /// One more attempt of the request.
    fn request(&self) -> Request<RequestBody> {
        let body = self
            .body
            .clone()
            .map_or_else(RequestBody::empty, RequestBody::replay);
        Request::from_parts(super::retry::copy_parts(&self.parts), body)
    }

    fn bytes(&self) -> u64 {
        self.body.as_ref().map_or(0, |body| body.len())
    }
}

/// What [`keep_for_replay`] made of a request.
enum Kept {
    Replay(Replay),
    /// Sent once: the body outgrew the buffer (its prefix goes first, then the rest).
    Stream(Request<RequestBody>, Option<oneshot::Receiver<BodyOutcome>>),
    /// A request-body filter answered while the body was read.
    Rejected(Response<ResponseBody>),
}

/// Reads a request body of a declared length up to `limit` bytes into memory before the
/// first attempt, so the request can be retried or mirrored. Request-body filters see each chunk
/// once, as it is read.
async fn keep_for_replay(
    parts: Parts,
    body: RequestBody,
    body_outcome: Option<oneshot::Receiver<BodyOutcome>>,
    limit: usize,
) -> Kept {
    use http_body::Body as _;
    let Some(mut body_outcome) = body_outcome else {
        // Bodiless: nothing to keep but the head.
        return Kept::Replay(Replay { parts, body: None });
    };
    let hint = body.size_hint();
    if hint.lower() > limit as u64 || hint.upper().is_none() {
        // Declared larger than the buffer: stream it right away. So is a body of unknown
        // length (chunked, or HTTP/2 without `content-length`): it may be a stream whose
        // sender waits for the response before it ends (gRPC, interactive uploads), and
        // reading it first would stall both sides until the buffer filled.
        return Kept::Stream(Request::from_parts(parts, body), Some(body_outcome));
    }
    match body.buffer(limit).await {
        Buffering::Complete(buffer) => Kept::Replay(Replay {
            parts,
            body: Some(buffer),
        }),
        Buffering::TooLarge(body) => {
            Kept::Stream(Request::from_parts(parts, body), Some(body_outcome))
        }
        Buffering::Rejected => match body_outcome.try_recv() {
            Ok(BodyOutcome::Rejected(response)) => Kept::Rejected(response),
            _ => Kept::Rejected(invalid_body()),
        },
        Buffering::Failed(error) => {
            // The client went away or sent a malformed body before it was complete:
            // nothing was sent upstream, and there is nothing to send.
            tracing::debug!(%error, "request body failed while buffered");
            Kept::Rejected(invalid_body())
        }
    }
}

fn invalid_body() -> Response<ResponseBody> {
    plain_text(StatusCode::BAD_REQUEST, "invalid request body\n")
}

/// An HTTP/1.1 upgrade the client asked for (`Connection: upgrade` + `Upgrade: ..`).
pub(crate) struct Upgrade {
    protocol: HeaderValue,
    /// The client's side of the connection once the `101` has been sent.
    downstream: Option<ClientSide>,
}

/// Where the client's connection comes from after a `101`: hyper's codec or the native
/// one.
enum ClientSide {
    Hyper(OnUpgrade),
    Native(crate::server::h1::DownstreamUpgrade),
}

impl Upgrade {
    fn requested(parts: &mut Parts) -> Option<Self> {
        let wants = parts.version == http::Version::HTTP_11
            && parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .any(|value| {
                    value
                        .as_bytes()
                        .split(|b| *b == b',')
                        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
                });
        let protocol = parts
            .headers
            .get(header::UPGRADE)
            .filter(|_| wants)?
            .clone();
        let downstream = match parts.extensions.remove::<OnUpgrade>() {
            Some(upgrade) => Some(ClientSide::Hyper(upgrade)),
            None => parts
                .extensions
                .remove::<crate::server::h1::DownstreamUpgrade>()
                .map(ClientSide::Native),
        };
        Some(Upgrade {
            protocol,
            downstream,
        })
    }

    /// The upgrade headers the hop-by-hop rules removed, put back for the upstream.
    fn restore_request_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
    }

    /// The upstream switched protocols: answer the client's `101` with the upstream's
    /// `Upgrade`, and splice the two connections once both sides have switched. From
    /// there bytes are copied both ways (half-close respected) until either side closes.
    fn tunnel(self, response: &mut Response<ResponseBody>, stats: &Arc<ListenerStats>) {
        let upstream = response
            .extensions_mut()
            .remove::<UpstreamUpgrade>()
            .and_then(|upgrade| upgrade.take());
        let protocol = response
            .headers()
            .get(header::UPGRADE)
            .cloned()
            .unwrap_or(self.protocol);
        prepare_response(response);
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
        let (Some(downstream), Some(upstream)) = (self.downstream, upstream) else {
            return;
        };
        let stats = Arc::clone(stats);
        tokio::spawn(async move {
            let mut upstream = upstream;
            let spliced = match downstream {
                ClientSide::Hyper(upgrade) => match upgrade.await {
                    Ok(downstream) => {
                        stats.downstream_cx_upgrades_total.inc();
                        let _active = GaugeGuard::new(&stats.downstream_cx_upgrades_active);
                        let mut downstream = TokioIo::new(downstream);
                        tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await
                    }
                    Err(error) => {
                        tracing::debug!(%error, "upgrade did not complete");
                        return;
                    }
                },
                ClientSide::Native(upgrade) => match upgrade.upgraded().await {
                    Some(mut downstream) => {
                        stats.downstream_cx_upgrades_total.inc();
                        let _active = GaugeGuard::new(&stats.downstream_cx_upgrades_active);
                        tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await
                    }
                    None => {
                        tracing::debug!("upgrade did not complete");
                        return;
                    }
                },
            };
            if let Err(error) = spliced {
                tracing::debug!(%error, "upgraded connection closed with error");
            }
        });
    }
}

fn direct_response(direct: &DirectResponse) -> Response<ResponseBody> {
    // The macro only admits 100..=599 (a valid StatusCode); anything else is a bug that
    // should surface as a 500, not a panic.
    let status = StatusCode::from_u16(direct.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    plain_text(status, direct.body)
}

/// Builds `Location` from the request and the configured replacements (Envoy's
/// `RedirectAction`): unset parts keep the request's values.
fn redirect_response(
    redirect: &Redirect,
    parts: &Parts,
    downstream: &Downstream,
) -> Response<ResponseBody> {
    let mut location = String::with_capacity(128);
    location.push_str(redirect.scheme.unwrap_or(downstream.scheme));
    location.push_str("://");
    match redirect.host {
        Some(host) => location.push_str(host),
        None => location.push_str(request_host(parts)),
    }
    match redirect.port {
        Some(port) => {
            let _ = write!(location, ":{port}");
        }
        // Keep the request's explicit port when neither host nor scheme changed.
        None if redirect.host.is_none() && redirect.scheme.is_none() => {
            if let Some(port) = request_port(parts) {
                location.push(':');
                location.push_str(port);
            }
        }
        None => {}
    }
    let path = parts.uri.path();
    match (redirect.path, redirect.prefix_rewrite) {
        (Some(new_path), _) => location.push_str(new_path),
        (None, Some((matched, replacement))) if path.starts_with(matched) => {
            location.push_str(replacement);
            location.push_str(&path[matched.len()..]);
        }
        _ => location.push_str(path),
    }
    if !redirect.strip_query {
        if let Some(query) = parts.uri.query() {
            location.push('?');
            location.push_str(query);
        }
    }
    let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let mut response = plain_text(status, "");
    match HeaderValue::try_from(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        // Only reachable with a Host header that cannot appear in a URL.
        Err(_) => plain_text(StatusCode::BAD_REQUEST, "bad host\n"),
    }
}

fn request_port(parts: &Parts) -> Option<&str> {
    let authority = match parts.uri.authority() {
        Some(authority) => authority.as_str(),
        None => parts.headers.get(header::HOST)?.to_str().ok()?,
    };
    let (_, port) = authority.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: &str) -> Parts {
        http::Request::builder()
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn location(redirect: &Redirect, uri: &str, host: &str) -> String {
        let downstream = Downstream::new(None, "test", Arc::default());
        let response = redirect_response(redirect, &parts(uri, host), &downstream);
        response.headers()["location"].to_str().unwrap().to_owned()
    }

    #[test]
    fn redirect_keeps_unset_parts() {
        static R: Redirect = Redirect::new(301).path("/new");
        assert_eq!(
            location(&R, "/old?x=1", "example.org:8080"),
            "http://example.org:8080/new?x=1"
        );
    }

    #[test]
    fn redirect_to_https_host_with_prefix_rewrite() {
        static R: Redirect = Redirect::new(308)
            .scheme("https")
            .host("new.example")
            .prefix_rewrite("/old/", "/v2/");
        assert_eq!(
            location(&R, "/old/a/b?q", "example.org:8080"),
            "https://new.example/v2/a/b?q"
        );
    }

    #[test]
    fn redirect_strips_query() {
        static R: Redirect = Redirect::new(302).port(8443).strip_query(true);
        assert_eq!(
            location(&R, "/p?secret=1", "example.org"),
            "http://example.org:8443/p"
        );
    }
}
