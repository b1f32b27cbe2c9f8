//! Keywords that introduce a DSL node, peekable with `input.peek(kw::listener)`.

syn::custom_keyword!(listener);
syn::custom_keyword!(cluster);
syn::custom_keyword!(http);
syn::custom_keyword!(tcp);
syn::custom_keyword!(virtual_host);
syn::custom_keyword!(route);
