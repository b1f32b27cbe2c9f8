//! Running the pipeline on token streams in unit tests.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand;

/// Every error message for `input`, in reporting order (empty if it is valid).
pub fn errors(input: TokenStream) -> Vec<String> {
    match expand::checked_topology(input) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|error| error.to_string()).collect(),
    }
}

/// The first line of each error message (the part before the `help:` line).
pub fn headlines(input: TokenStream) -> Vec<String> {
    errors(input)
        .iter()
        .map(|message| message.lines().next().unwrap_or_default().to_owned())
        .collect()
}

/// The expansion of a valid `input` as text, after checking it is valid Rust.
pub fn expand_ok(input: TokenStream) -> String {
    let output = expand::proxy(input);
    let text = output.to_string();
    assert!(
        !text.contains("compile_error"),
        "unexpected errors: {:#?}",
        errors(output.clone())
    );
    syn::parse2::<syn::File>(output).expect("the expansion is valid Rust");
    text
}

/// A valid one-listener topology around `routes` (forwarding somewhere to `api`).
pub fn with_routes(routes: TokenStream) -> TokenStream {
    quote! {
        listener edge {
            bind: "127.0.0.1:8080",
            http { virtual_host site { domains: ["*"], #routes } }
        }
        cluster api { endpoints: ["127.0.0.1:8081"] }
    }
}

/// A valid topology whose cluster `api` has the given fields.
pub fn with_cluster(fields: TokenStream) -> TokenStream {
    quote! {
        listener edge {
            bind: "127.0.0.1:8080",
            http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
        }
        cluster api { #fields }
    }
}

/// A valid topology whose listener has the given fields.
pub fn with_listener(fields: TokenStream) -> TokenStream {
    quote! {
        listener edge {
            #fields,
            http { virtual_host site { domains: ["*"], route prefix("/") => cluster(api) } }
        }
        cluster api { endpoints: ["127.0.0.1:8081"] }
    }
}
