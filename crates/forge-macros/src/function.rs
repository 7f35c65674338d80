//! `#[forge::query]`, `#[forge::mutation]` and `#[forge::action]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::{FnArg, ItemFn, LitInt, LitStr};

use crate::job::{duration_ms, non_empty, result_ok_type};

/// Which macro.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Query,
    Mutation,
    Action,
}

impl Kind {
    fn macro_name(self) -> &'static str {
        match self {
            Kind::Query => "#[forge::query]",
            Kind::Mutation => "#[forge::mutation]",
            Kind::Action => "#[forge::action]",
        }
    }
}

/// Who may call: at most one of `public`, `require_auth`, `require_role(..)`.
enum Access {
    Default,
    Public,
    Auth,
    Roles(Vec<LitStr>),
}

struct Attrs {
    name: Option<LitStr>,
    timeout_ms: u64,
    access: Access,
    rate_limit: Option<TokenStream>,
    cache_ms: Option<u64>,
    reads: Option<Vec<LitStr>>,
}

pub(crate) fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let macro_name = kind.macro_name();
    let mut attrs = Attrs {
        name: None,
        timeout_ms: 30_000,
        access: Access::Default,
        rate_limit: None,
        cache_ms: None,
        reads: None,
    };
    syn::parse::Parser::parse2(syn::meta::parser(|meta| parse_attr(kind, &mut attrs, &meta)), attr)?;
    let func: ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(func.sig.fn_token, format!("{macro_name} needs an `async fn`")));
    }
    if !func.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&func.sig.generics, format!("{macro_name} functions cannot be generic")));
    }
    let inputs: Vec<&FnArg> = func.sig.inputs.iter().collect();
    let [_, args] = inputs.as_slice() else {
        return Err(syn::Error::new_spanned(&func.sig.inputs, format!("{macro_name} functions take `ctx` and `args`")));
    };
    let FnArg::Typed(args) = args else {
        return Err(syn::Error::new_spanned(args, "functions cannot take `self`"));
    };
    let args_ty = &args.ty;
    let output_ty =
        result_ok_type(&func.sig.output, &format!("{macro_name} functions return `Result<T, ForgeError>`"))?;
    let fn_name = &func.sig.ident;
    let name = attrs.name.map(|n| n.value()).unwrap_or_else(|| fn_name.to_string());
    let (kind_tokens, context) = match kind {
        Kind::Query => (quote!(Query), quote!(QueryContext)),
        Kind::Mutation => (quote!(Mutation), quote!(MutationContext)),
        Kind::Action => (quote!(Action), quote!(ActionContext)),
    };
    let access = match attrs.access {
        Access::Public => quote!(::forge::functions::Access::Public),
        Access::Default | Access::Auth => quote!(::forge::functions::Access::Authenticated),
        Access::Roles(roles) => quote!(::forge::functions::Access::AnyRole(&[#(#roles),*])),
    };
    let rate_limit = match attrs.rate_limit {
        Some(limit) => quote!(::core::option::Option::Some(#limit)),
        None => quote!(::core::option::Option::None),
    };
    let cache = match attrs.cache_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let reads = match attrs.reads {
        Some(tables) => quote!(::core::option::Option::Some(&[#(#tables),*])),
        None => quote!(::core::option::Option::None),
    };
    let timeout_ms = attrs.timeout_ms;
    let doc = doc_comment(&func.attrs);
    Ok(quote! {
        #func

        ::forge::__private::inventory::submit! {
            ::forge::functions::FunctionRegistration {
                info: {
                    fn info() -> ::forge::functions::FunctionInfo {
                        ::forge::functions::FunctionInfo {
                            name: #name,
                            kind: ::forge::functions::FunctionKind::#kind_tokens,
                            args_type: ::core::stringify!(#args_ty),
                            output_type: ::core::stringify!(#output_ty),
                            access: #access,
                            rate_limit: #rate_limit,
                            cache: #cache,
                            timeout: ::core::time::Duration::from_millis(#timeout_ms),
                            reads: #reads,
                        }
                    }
                    info
                },
                handler: {
                    fn handler(
                        parts: ::forge::functions::CallParts,
                        args: ::forge::__private::serde_json::Value,
                    ) -> ::forge::jobs::BoxFuture<
                        ::core::result::Result<::forge::__private::serde_json::Value, ::forge::functions::ForgeError>,
                    > {
                        ::forge::functions::run_function::<::forge::functions::#context, #args_ty, #output_ty, _, _>(parts, args, |ctx, args| async move {
                            let out = #fn_name(&ctx, args).await;
                            (ctx, out)
                        })
                    }
                    handler
                },
                types: {
                    // The borrow picks `HasSchema` or `NoSchema` (see `SchemaProbe`).
                    #[allow(clippy::needless_borrow)]
                    fn types() -> ::forge::functions::FunctionTypes {
                        #[allow(unused_imports)]
                        use ::forge::functions::{HasSchema as _, NoSchema as _};
                        ::forge::functions::FunctionTypes {
                            args: (&::forge::functions::SchemaProbe::<#args_ty>::new()).schema(),
                            output: (&::forge::functions::SchemaProbe::<#output_ty>::new()).schema(),
                            doc: #doc,
                        }
                    }
                    types
                },
            }
        }
    })
}

fn parse_attr(kind: Kind, attrs: &mut Attrs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
    let set_access = |attrs: &mut Attrs, access: Access| {
        if !matches!(attrs.access, Access::Default) {
            return Err(meta.error("use one of `public`, `require_auth` or `require_role(..)`"));
        }
        attrs.access = access;
        Ok(())
    };
    match key.as_str() {
        "name" => attrs.name = Some(non_empty(meta.value()?.parse()?)?),
        "timeout" => attrs.timeout_ms = duration_ms(meta)?,
        "public" => set_access(attrs, Access::Public)?,
        "require_auth" => set_access(attrs, Access::Auth)?,
        "require_role" => {
            let content;
            syn::parenthesized!(content in meta.input);
            let roles = content.parse_terminated(|input| input.parse::<LitStr>(), syn::Token![,])?;
            if roles.is_empty() {
                return Err(meta.error("name at least one role: require_role(\"admin\")"));
            }
            let roles = roles.into_iter().map(non_empty).collect::<syn::Result<Vec<_>>>()?;
            set_access(attrs, Access::Roles(roles))?;
        }
        "rate_limit" => attrs.rate_limit = Some(parse_rate_limit(meta)?),
        "cache" if kind == Kind::Query => attrs.cache_ms = Some(duration_ms(meta)?),
        "cache" => {
            return Err(meta.error("only queries can be cached: mutations and actions change something on every call"));
        }
        "reads" if kind == Kind::Query => {
            let list: syn::ExprArray = meta.value()?.parse()?;
            let mut tables = Vec::new();
            for table in list.elems {
                match table {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) if valid_table(&s.value()) => {
                        tables.push(s)
                    }
                    other => {
                        return Err(syn::Error::new_spanned(
                            other,
                            "`reads` lists table names as strings: reads = [\"notes\", \"users\"]",
                        ));
                    }
                }
            }
            attrs.reads = Some(tables);
        }
        "reads" => {
            return Err(meta.error("only queries declare `reads`: it says which changes run a live query again"));
        }
        _ => {
            return Err(meta.error(format!(
                "unknown {} attribute; expected one of name, timeout, public, require_auth, require_role, rate_limit{}",
                kind.macro_name(),
                if kind == Kind::Query { ", cache, reads" } else { "" }
            )));
        }
    }
    Ok(())
}

/// `rate_limit(requests = 10, per = "1m", key = "user")`; `key` is `user` (default),
/// `api_key`, `ip` or `global`.
fn parse_rate_limit(meta: &ParseNestedMeta<'_>) -> syn::Result<TokenStream> {
    let mut requests: Option<u32> = None;
    let mut per_ms: u64 = 60_000;
    let mut key = quote!(User);
    meta.parse_nested_meta(|inner| {
        let name = inner.path.get_ident().map(ToString::to_string).unwrap_or_default();
        match name.as_str() {
            "requests" => {
                let n: LitInt = inner.value()?.parse()?;
                let v = n.base10_parse::<u32>()?;
                if v == 0 {
                    return Err(syn::Error::new_spanned(n, "requests must be at least 1"));
                }
                requests = Some(v);
            }
            "per" => per_ms = duration_ms(&inner)?,
            "key" => {
                let lit: LitStr = inner.value()?.parse()?;
                key = match lit.value().as_str() {
                    "user" => quote!(User),
                    "api_key" => quote!(ApiKey),
                    "ip" => quote!(Ip),
                    "global" => quote!(Global),
                    _ => {
                        return Err(syn::Error::new_spanned(lit, "key is \"user\", \"api_key\", \"ip\" or \"global\""));
                    }
                };
            }
            _ => return Err(inner.error("expected `requests = N`, `per = \"1m\"` or `key = \"user\"`")),
        }
        Ok(())
    })?;
    let requests = requests.ok_or_else(|| meta.error("rate_limit needs `requests = N`"))?;
    Ok(quote! {
        ::forge::functions::RateLimit {
            requests: #requests,
            per: ::core::time::Duration::from_millis(#per_ms),
            key: ::forge::functions::RateLimitKey::#key,
        }
    })
}

/// A table name `reads` accepts: letters, digits and `_`, not starting with a digit, at most
/// 63 bytes (Postgres's limit).
fn valid_table(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The function's doc comment: its `///` lines joined, each without the one leading space
/// rustdoc strips, the whole trimmed.
fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value: syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }),
                ..
            }) => Some(s.value()),
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').map(str::to_owned).unwrap_or(line))
        .collect();
    lines.join("\n").trim().to_owned()
}
