//! Constant expressions for a cluster's failure handling and a route's retry policy:
//! each a `const fn` builder chain, so the settings are compiled into the binary.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::cluster::duration;
use super::paths::{
    CIRCUIT_BREAKERS, HEALTH_CHECK, OUTLIER_DETECTION, RETRY_BUDGET, RETRY_ON, RETRY_POLICY,
    SESSION_PERSISTENCE,
};
use crate::model::resilience::{
    CircuitBreakers, HealthCheck, HealthKind, OutlierDetection, SessionPersistence,
};
use crate::model::retry::{Retry, RetryOn};

pub fn health_check(check: &HealthCheck) -> TokenStream {
    let optional_str = |value: &Option<String>| match value {
        Some(text) => quote!(::core::option::Option::Some(#text)),
        None => quote!(::core::option::Option::None),
    };
    let optional_bytes = |value: &Option<String>| match value {
        Some(text) => {
            let bytes = Literal::byte_string(text.as_bytes());
            quote!(::core::option::Option::Some(#bytes))
        }
        None => quote!(::core::option::Option::None),
    };
    let mut value = match &check.kind {
        HealthKind::Http {
            path,
            host,
            expected_statuses,
            service_name,
        } => {
            let mut value = quote!(#HEALTH_CHECK::http(#path));
            if let Some(host) = host {
                value = quote!(#value.host(#host));
            }
            if !expected_statuses.is_empty() {
                let ranges = expected_statuses.iter().map(|(from, to)| {
                    let (from, to) = (Literal::u16_unsuffixed(*from), Literal::u16_unsuffixed(*to));
                    quote!((#from, #to))
                });
                value = quote!(#value.expected_statuses(&[#(#ranges),*]));
            }
            if let Some(service) = service_name {
                value = quote!(#value.service_name_header(#service));
            }
            value
        }
        HealthKind::Tcp { send, expect } => {
            let (send, expect) = (optional_bytes(send), optional_bytes(expect));
            quote!(#HEALTH_CHECK::tcp(#send, #expect))
        }
        HealthKind::Grpc { service_name } => {
            let service = optional_str(service_name);
            quote!(#HEALTH_CHECK::grpc(#service))
        }
        HealthKind::Redis => quote!(#HEALTH_CHECK::redis()),
    };
    let interval = duration(check.interval);
    let jitter = duration(check.jitter);
    let timeout = duration(check.timeout);
    let no_traffic = duration(check.no_traffic_interval);
    let unhealthy = Literal::u32_unsuffixed(check.unhealthy_threshold);
    let healthy = Literal::u32_unsuffixed(check.healthy_threshold);
    value = quote! {
        #value
            .interval(#interval)
            .jitter(#jitter)
            .timeout(#timeout)
            .unhealthy_threshold(#unhealthy)
            .healthy_threshold(#healthy)
            .no_traffic_interval(#no_traffic)
    };
    value
}

pub fn outlier_detection(detection: &OutlierDetection) -> TokenStream {
    let consecutive_5xx = Literal::u32_unsuffixed(detection.consecutive_5xx);
    let gateway = Literal::u32_unsuffixed(detection.consecutive_gateway_failure);
    let interval = duration(detection.interval);
    let base = duration(detection.base_ejection_time);
    let max = duration(detection.max_ejection_time);
    let percent =
        Literal::u8_unsuffixed(u8::try_from(detection.max_ejection_percent).unwrap_or(100));
    quote! {
        #OUTLIER_DETECTION::DEFAULT
            .consecutive_5xx(#consecutive_5xx)
            .consecutive_gateway_failure(#gateway)
            .interval(#interval)
            .base_ejection_time(#base)
            .max_ejection_time(#max)
            .max_ejection_percent(#percent)
    }
}

pub fn circuit_breakers(breakers: &CircuitBreakers) -> TokenStream {
    let connections = Literal::u32_unsuffixed(breakers.max_connections);
    let pending = Literal::u32_unsuffixed(breakers.max_pending_requests);
    let requests = Literal::u32_unsuffixed(breakers.max_requests);
    let retries = Literal::u32_unsuffixed(breakers.max_retries);
    let mut value = quote! {
        #CIRCUIT_BREAKERS::DEFAULT
            .max_connections(#connections)
            .max_pending_requests(#pending)
            .max_requests(#requests)
            .max_retries(#retries)
    };
    if let Some((budget, min)) = breakers.retry_budget {
        let (budget, min) = (
            Literal::u32_unsuffixed(budget),
            Literal::u32_unsuffixed(min),
        );
        value = quote! {
            #value.retry_budget(#RETRY_BUDGET { budget_percent: #budget, min_retry_concurrency: #min })
        };
    }
    value
}

pub fn session_persistence(persistence: &SessionPersistence) -> TokenStream {
    match persistence {
        SessionPersistence::Cookie { name, path, ttl } => {
            let ttl = match ttl {
                Some(ttl) => {
                    let ttl = duration(*ttl);
                    quote!(::core::option::Option::Some(#ttl))
                }
                None => quote!(::core::option::Option::None),
            };
            quote!(#SESSION_PERSISTENCE::Cookie { name: #name, path: #path, ttl: #ttl })
        }
        SessionPersistence::Header { name } => quote!(#SESSION_PERSISTENCE::Header { name: #name }),
    }
}

pub fn retry_policy(retry: &Retry) -> TokenStream {
    let conditions = retry.retry_on.iter().map(|condition| match condition {
        RetryOn::FiveXx => quote!(#RETRY_ON::FIVE_XX),
        RetryOn::GatewayError => quote!(#RETRY_ON::GATEWAY_ERROR),
        RetryOn::ConnectFailure => quote!(#RETRY_ON::CONNECT_FAILURE),
        RetryOn::Reset => quote!(#RETRY_ON::RESET),
        RetryOn::RetriableStatusCodes => quote!(#RETRY_ON::RETRIABLE_STATUS_CODES),
    });
    let retry_on = conditions.fold(quote!(#RETRY_ON::NONE), |all, one| quote!(#all.union(#one)));
    let retries = Literal::u32_unsuffixed(retry.num_retries);
    let base = duration(retry.base_interval);
    let buffered = Literal::usize_unsuffixed(retry.max_buffered_body as usize);
    let mut value = quote! {
        #RETRY_POLICY::new(#retry_on)
            .num_retries(#retries)
            .base_interval(#base)
            .max_buffered_body(#buffered)
    };
    if let Some(per_try) = &retry.per_try_timeout {
        let per_try = duration(per_try.value);
        value = quote!(#value.per_try_timeout(#per_try));
    }
    if let Some(max) = retry.max_interval {
        let max = duration(max);
        value = quote!(#value.max_interval(#max));
    }
    if !retry.retriable_status_codes.is_empty() {
        let codes = retry
            .retriable_status_codes
            .iter()
            .map(|code| Literal::u16_unsuffixed(*code));
        value = quote!(#value.retriable_status_codes(&[#(#codes),*]));
    }
    value
}
