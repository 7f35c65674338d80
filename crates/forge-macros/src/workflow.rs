//! `#[forge::workflow]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::meta::ParseNestedMeta;
use syn::{FnArg, ItemFn, LitInt, LitStr};

use crate::job::{
    JobKind, at_least_one, duration_ms, job_kind, non_empty, pascal_case, priority, queue_name, result_ok_type,
    type_name,
};

#[derive(Default)]
struct Attrs {
    name: Option<LitStr>,
    type_name: Option<LitStr>,
    version: Option<LitInt>,
    queue: Option<LitStr>,
    priority: Option<syn::Ident>,
    max_attempts: Option<LitInt>,
    timeout_ms: Option<u64>,
    execution_timeout_ms: Option<u64>,
    capability: Option<LitStr>,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut attrs = Attrs::default();
    let parser = syn::meta::parser(|meta| parse_attr(&mut attrs, meta));
    syn::parse::Parser::parse2(parser, attr)?;
    let func: ItemFn = syn::parse2(item)?;

    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(func.sig.fn_token, "#[forge::workflow] needs an `async fn`"));
    }
    if !func.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&func.sig.generics, "#[forge::workflow] functions cannot be generic"));
    }
    let inputs: Vec<&FnArg> = func.sig.inputs.iter().collect();
    let [_, args] = inputs.as_slice() else {
        return Err(syn::Error::new_spanned(
            &func.sig.inputs,
            "#[forge::workflow] functions take two arguments: `ctx: &WorkflowContext, args: YourArgs`",
        ));
    };
    let args_ty = match args {
        FnArg::Typed(pat) => &pat.ty,
        FnArg::Receiver(r) => {
            return Err(syn::Error::new_spanned(r, "#[forge::workflow] functions cannot take `self`"));
        }
    };
    let output_ty =
        result_ok_type(&func.sig.output, "#[forge::workflow] functions return `Result<Output, WorkflowError>`")?;

    let fn_name = &func.sig.ident;
    let vis = &func.vis;
    let struct_name = match &attrs.type_name {
        Some(name) => format_ident!("{}", name.value(), span = name.span()),
        None => format_ident!("{}", pascal_case(&fn_name.to_string()), span = fn_name.span()),
    };
    let kind = attrs.name.map(|n| n.value()).unwrap_or_else(|| fn_name.to_string());
    let doc = format!("The `{kind}` workflow, declared by `#[forge::workflow]` on `{fn_name}`.");

    let mut options = Vec::new();
    if let Some(queue) = &attrs.queue {
        options.push(quote! { options.queue = #queue; });
    }
    if let Some(priority) = &attrs.priority {
        let variant = format_ident!("{}", pascal_case(&priority.to_string()), span = priority.span());
        options.push(quote! { options.priority = ::forge::jobs::Priority::#variant; });
    }
    if let Some(n) = &attrs.max_attempts {
        options.push(quote! { options.max_attempts = #n; });
    }
    if let Some(ms) = attrs.execution_timeout_ms {
        options.push(quote! { options.timeout = ::core::time::Duration::from_millis(#ms); });
    }
    if let Some(capability) = &attrs.capability {
        options.push(quote! { options.capability = ::core::option::Option::Some(#capability); });
    }

    let job = job_kind(JobKind {
        doc: &doc,
        vis,
        struct_name: &struct_name,
        kind: &kind,
        args_ty: quote!(#args_ty),
        output_ty: quote!(#output_ty),
        options: &options,
        run: quote!(::forge::workflows::execute::<Self>(ctx, args)),
    });
    let module = crate::job::generated_module(&struct_name);
    let version = attrs.version.map(|v| quote!(#v)).unwrap_or_else(|| quote!(1));
    let timeout = match attrs.timeout_ms {
        Some(ms) => quote! { ::core::option::Option::Some(::core::time::Duration::from_millis(#ms)) },
        None => quote! { ::core::option::Option::None },
    };
    Ok(quote! {
        #func
        #job

        impl ::forge::workflows::Workflow for #module::#struct_name {
            const VERSION: u32 = #version;

            fn timeout() -> ::core::option::Option<::core::time::Duration> {
                #timeout
            }

            fn execute(
                ctx: &::forge::workflows::WorkflowContext,
                args: <Self as ::forge::jobs::Job>::Args,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<
                    <Self as ::forge::jobs::Job>::Output,
                    ::forge::workflows::WorkflowError,
                >,
            > + ::core::marker::Send + '_ {
                #fn_name(ctx, args)
            }
        }
    })
}

fn parse_attr(attrs: &mut Attrs, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
    let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
    match key.as_str() {
        "name" => attrs.name = Some(non_empty(meta.value()?.parse()?)?),
        "type_name" => attrs.type_name = Some(type_name(meta.value()?.parse()?)?),
        "version" => attrs.version = Some(at_least_one(&meta, "version")?),
        "queue" => attrs.queue = Some(queue_name(&meta)?),
        "priority" => attrs.priority = Some(priority(&meta)?),
        "max_attempts" => attrs.max_attempts = Some(at_least_one(&meta, "max_attempts")?),
        "timeout" => attrs.timeout_ms = Some(duration_ms(&meta)?),
        "execution_timeout" => attrs.execution_timeout_ms = Some(duration_ms(&meta)?),
        "worker_capability" => attrs.capability = Some(non_empty(meta.value()?.parse()?)?),
        _ => {
            return Err(meta.error(
                "unknown #[forge::workflow] attribute; expected one of name, type_name, version, queue, priority, \
                 max_attempts, timeout, execution_timeout, worker_capability",
            ));
        }
    }
    Ok(())
}
