//! What the macro emits when the topology has errors (as thiserror's `fallback.rs`).
//!
//! Next to the errors it defines a stand-in `Proxy` with the same public surface, so
//! user code such as `Proxy::main()` still resolves and the build reports only the
//! topology's own errors, not a cascade of "cannot find type `Proxy`".

use proc_macro2::TokenStream;
use quote::quote;

pub fn expand(errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    quote! {
        #errors

        /// Stand-in for the proxy while `proxy!` reports errors.
        pub struct Proxy;

        impl Proxy {
            /// Never runs: the crate does not compile while `proxy!` reports errors.
            pub fn main() -> ::std::process::ExitCode {
                ::core::unreachable!()
            }
        }
    }
}
