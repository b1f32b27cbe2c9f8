//! `tls: { .. }` as runtime specs, loaded (and every file checked) by `Inputs` at start-up.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::cluster::duration;
use super::paths::{CERTIFICATE_SPEC, SERVER_TLS_SPEC, TLS_VERSION, UPSTREAM_TLS_SPEC};
use crate::model::tls::{ClusterTls, ListenerTls, PathValue, TlsVersion};

fn path(path: &PathValue, inputs: &Ident) -> TokenStream {
    match path {
        PathValue::Literal(path) => quote!(#path),
        PathValue::Env { var, default } => quote!(#inputs.path_env(#var, #default)),
    }
}

fn version(version: TlsVersion) -> TokenStream {
    match version {
        TlsVersion::Tls12 => quote!(#TLS_VERSION::Tls12),
        TlsVersion::Tls13 => quote!(#TLS_VERSION::Tls13),
    }
}

/// `ServerTlsSpec::new(CertificateSpec::new(..).server_names([..])).certificate(..)...`
pub fn listener_spec(tls: &ListenerTls, inputs: &Ident) -> TokenStream {
    let mut certificates = tls.certificates.iter().map(|decl| {
        let (cert, key) = (path(&decl.cert, inputs), path(&decl.key, inputs));
        let names = &decl.sni;
        let names = (!names.is_empty()).then(|| quote!(.server_names([#(#names),*])));
        quote!(#CERTIFICATE_SPEC::new(#cert, #key) #names)
    });
    let Some(first) = certificates.next() else {
        return super::internal_error("a tls block without a certificate passed the checks");
    };
    let mut spec = quote!(#SERVER_TLS_SPEC::new(#first));
    for more in certificates {
        spec = quote!(#spec.certificate(#more));
    }
    if let Some(ca) = &tls.client_ca {
        let ca = path(ca, inputs);
        spec = quote!(#spec.client_ca(#ca));
    }
    if tls.require_client_cert {
        spec = quote!(#spec.require_client_cert(true));
    }
    if let Some(min) = tls.min_version {
        let min = version(min);
        spec = quote!(#spec.min_version(#min));
    }
    if let Some(timeout) = tls.handshake_timeout {
        let timeout = duration(timeout);
        spec = quote!(#spec.handshake_timeout(#timeout));
    }
    match tls.reload_interval {
        Some(Some(interval)) => {
            let interval = duration(interval);
            spec = quote!(#spec.reload_interval(::core::option::Option::Some(#interval)));
        }
        Some(None) => spec = quote!(#spec.reload_interval(::core::option::Option::None)),
        None => {}
    }
    spec
}

/// `UpstreamTlsSpec::new().sni(..).ca(..).client_cert(..).min_version(..)`.
pub fn cluster_spec(tls: &ClusterTls, inputs: &Ident) -> TokenStream {
    let mut spec = quote!(#UPSTREAM_TLS_SPEC::new());
    if let Some(sni) = &tls.sni {
        let sni = &sni.value;
        spec = quote!(#spec.sni(#sni));
    }
    if let Some(ca) = &tls.ca {
        let ca = path(ca, inputs);
        spec = quote!(#spec.ca(#ca));
    }
    if let Some((cert, key)) = &tls.client_cert {
        let (cert, key) = (path(cert, inputs), path(key, inputs));
        spec = quote!(#spec.client_cert(#cert, #key));
    }
    if let Some(min) = tls.min_version {
        let min = version(min);
        spec = quote!(#spec.min_version(#min));
    }
    spec
}
