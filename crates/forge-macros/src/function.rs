//! `#[forge::query]` and `#[forge::mutation]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{FnArg, ItemFn};

use crate::job::{duration_ms, result_ok_type};

/// Which macro.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Query,
    Mutation,
}

pub(crate) fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let macro_name = match kind {
        Kind::Query => "#[forge::query]",
        Kind::Mutation => "#[forge::mutation]",
    };
    let mut name: Option<syn::LitStr> = None;
    let mut timeout_ms: u64 = 30_000;
    syn::parse::Parser::parse2(
        syn::meta::parser(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
            match key.as_str() {
                "name" => name = Some(meta.value()?.parse()?),
                "timeout" => timeout_ms = duration_ms(&meta)?,
                "public" | "require_auth" | "require_role" | "rate_limit" | "cache" => {
                    return Err(meta.error(format!(
                        "`{key}` is not supported yet: authentication, rate limits and caching arrive with the gateway's auth"
                    )));
                }
                _ => return Err(meta.error(format!("unknown {macro_name} attribute; expected `name` or `timeout`"))),
            }
            Ok(())
        }),
        attr,
    )?;
    let func: ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(func.sig.fn_token, format!("{macro_name} needs an `async fn`")));
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
    let name = name.map(|n| n.value()).unwrap_or_else(|| fn_name.to_string());
    let (kind_tokens, runner) = match kind {
        Kind::Query => (quote!(Query), quote!(run_query)),
        Kind::Mutation => (quote!(Mutation), quote!(run_mutation)),
    };
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
                            timeout: ::core::time::Duration::from_millis(#timeout_ms),
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
                        ::forge::functions::#runner::<#args_ty, #output_ty, _, _>(parts, args, |ctx, args| async move {
                            #fn_name(&ctx, args).await
                        })
                    }
                    handler
                },
            }
        }
    })
}
