//! `#[forge::job]`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::meta::ParseNestedMeta;
use syn::{FnArg, GenericArgument, ItemFn, LitFloat, LitInt, LitStr, PathArguments, ReturnType, Type};

#[derive(Default)]
struct Attrs {
    name: Option<LitStr>,
    type_name: Option<LitStr>,
    queue: Option<LitStr>,
    priority: Option<syn::Ident>,
    max_attempts: Option<LitInt>,
    backoff: Option<TokenStream>,
    timeout_ms: Option<u64>,
    capability: Option<LitStr>,
    unique: Option<TokenStream>,
    transactional: bool,
    api: bool,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut attrs = Attrs::default();
    let parser = syn::meta::parser(|meta| parse_attr(&mut attrs, meta));
    syn::parse::Parser::parse2(parser, attr)?;
    let func: ItemFn = syn::parse2(item)?;

    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(func.sig.fn_token, "#[forge::job] needs an `async fn`"));
    }
    if !func.sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&func.sig.generics, "#[forge::job] functions cannot be generic"));
    }
    let inputs: Vec<&FnArg> = func.sig.inputs.iter().collect();
    let [_, args] = inputs.as_slice() else {
        return Err(syn::Error::new_spanned(
            &func.sig.inputs,
            "#[forge::job] functions take two arguments: `ctx: &JobContext, args: YourArgs`",
        ));
    };
    let args_ty = match args {
        FnArg::Typed(pat) => &pat.ty,
        FnArg::Receiver(r) => return Err(syn::Error::new_spanned(r, "#[forge::job] functions cannot take `self`")),
    };
    let output_ty = result_ok_type(&func.sig.output, "#[forge::job] functions return `Result<Output, JobError>`")?;

    let fn_name = &func.sig.ident;
    let vis = &func.vis;
    let struct_name = match &attrs.type_name {
        Some(name) => format_ident!("{}", name.value(), span = name.span()),
        None => format_ident!("{}", pascal_case(&fn_name.to_string()), span = fn_name.span()),
    };
    let kind = attrs.name.map(|n| n.value()).unwrap_or_else(|| fn_name.to_string());
    let doc = format!("The `{kind}` job, declared by `#[forge::job]` on `{fn_name}`.");

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
    if let Some(backoff) = &attrs.backoff {
        options.push(quote! { options.backoff = #backoff; });
    }
    if let Some(ms) = attrs.timeout_ms {
        options.push(quote! { options.timeout = ::core::time::Duration::from_millis(#ms); });
    }
    if let Some(capability) = &attrs.capability {
        options.push(quote! { options.capability = ::core::option::Option::Some(#capability); });
    }
    if let Some(unique) = &attrs.unique {
        options.push(quote! { options.unique = ::core::option::Option::Some(#unique); });
    }
    if attrs.api {
        options.push(quote! { options.api = true; });
    }
    if attrs.transactional {
        options.push(quote! { options.transactional = true; });
    }

    let job = job_kind(JobKind {
        doc: &doc,
        vis,
        struct_name: &struct_name,
        kind: &kind,
        args_ty: quote!(#args_ty),
        output_ty: quote!(#output_ty),
        options: &options,
        run: quote!(#fn_name(ctx, args)),
    });
    Ok(quote! {
        #func
        #job
    })
}

/// What [`job_kind`] generates a job kind from.
pub(crate) struct JobKind<'a> {
    pub(crate) doc: &'a str,
    pub(crate) vis: &'a syn::Visibility,
    pub(crate) struct_name: &'a syn::Ident,
    pub(crate) kind: &'a str,
    pub(crate) args_ty: TokenStream,
    pub(crate) output_ty: TokenStream,
    /// Statements that adjust `options`, a `JobOptions::new()`.
    pub(crate) options: &'a [TokenStream],
    /// The body of `Job::run`, with `ctx` and `args` in scope.
    pub(crate) run: TokenStream,
}

/// The private module a job's struct is defined in (see [`job_kind`]).
pub(crate) fn generated_module(struct_name: &syn::Ident) -> syn::Ident {
    format_ident!("__forge_job_{}", struct_name, span = struct_name.span())
}

/// A unit struct implementing `forge::jobs::Job`, registered with the global job registry.
///
/// The struct is defined in a private module and brought into the caller's module by a glob
/// import, which a type of the caller's own with the same name silently shadows; the assertion
/// at the end then fails with one message naming the fix (`type_name = "…"`), instead of
/// rustc's "defined multiple times" pointing at generated code.
pub(crate) fn job_kind(k: JobKind<'_>) -> TokenStream {
    let JobKind { doc, vis, struct_name, kind, args_ty, output_ty, options, run } = k;
    let module = generated_module(struct_name);
    let inner_vis = one_module_deeper(vis);
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #module {
            #[doc = #doc]
            #[derive(Clone, Copy, Debug, Default)]
            #inner_vis struct #struct_name;
        }
        #[allow(unused_imports)]
        #vis use #module::*;

        impl ::forge::__private::GeneratedJob for #module::#struct_name {}
        const _: () = ::forge::__private::assert_generated_job::<#struct_name>();

        impl ::forge::jobs::Job for #module::#struct_name {
            const NAME: &'static str = #kind;
            type Args = #args_ty;
            type Output = #output_ty;

            fn options() -> ::forge::jobs::JobOptions {
                #[allow(unused_mut)]
                let mut options = ::forge::jobs::JobOptions::new();
                #(#options)*
                options
            }

            fn run(
                ctx: &::forge::jobs::JobContext,
                args: Self::Args,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<Self::Output, ::forge::jobs::JobError>,
            > + ::core::marker::Send + '_ {
                #run
            }
        }

        ::forge::__private::inventory::submit! {
            ::forge::jobs::JobRegistration::of::<#module::#struct_name>()
        }
    }
}

/// The visibility that, on an item of the generated module, means what `vis` means on the
/// caller's item: private becomes `pub(super)`, `pub(super)` becomes `pub(in super::super)`.
fn one_module_deeper(vis: &syn::Visibility) -> TokenStream {
    match vis {
        syn::Visibility::Inherited => quote!(pub(super)),
        syn::Visibility::Public(_) => quote!(pub),
        syn::Visibility::Restricted(r) => {
            let path = &r.path;
            let first = path.segments.first().map(|s| s.ident.to_string()).unwrap_or_default();
            match first.as_str() {
                "crate" => quote!(pub(in #path)),
                "self" if path.segments.len() == 1 => quote!(pub(super)),
                _ => quote!(pub(in super::#path)),
            }
        }
    }
}

fn parse_attr(attrs: &mut Attrs, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
    let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
    match key.as_str() {
        "name" => attrs.name = Some(non_empty(meta.value()?.parse()?)?),
        "type_name" => attrs.type_name = Some(type_name(meta.value()?.parse()?)?),
        "queue" => attrs.queue = Some(queue_name(&meta)?),
        "priority" => attrs.priority = Some(priority(&meta)?),
        "max_attempts" => attrs.max_attempts = Some(at_least_one(&meta, "max_attempts")?),
        "timeout" => attrs.timeout_ms = Some(duration_ms(&meta)?),
        "worker_capability" => attrs.capability = Some(non_empty(meta.value()?.parse()?)?),
        "transactional" => attrs.transactional = true,
        "api" => attrs.api = true,
        "backoff" => attrs.backoff = Some(parse_backoff(&meta)?),
        "unique" => attrs.unique = Some(parse_unique(&meta)?),
        _ => {
            return Err(meta.error(
                "unknown #[forge::job] attribute; expected one of name, type_name, queue, priority, \
                 max_attempts, backoff, timeout, worker_capability, unique, transactional, api",
            ));
        }
    }
    Ok(())
}

/// `queue = "emails"`: 1 to 64 letters, digits, `_` or `-`.
pub(crate) fn queue_name(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let queue: LitStr = meta.value()?.parse()?;
    let v = queue.value();
    if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(syn::Error::new_spanned(queue, "queue names are 1 to 64 letters, digits, '_' or '-'"));
    }
    Ok(queue)
}

/// `priority = high`, without quotes.
pub(crate) fn priority(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Ident> {
    const ALLOWED: &str = "critical, high, normal, low or background";
    let value = meta.value()?;
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        return Err(syn::Error::new_spanned(
            &lit,
            format!("write the priority without quotes: `priority = {}`; it is one of {ALLOWED}", lit.value()),
        ));
    }
    let ident: syn::Ident =
        value.parse().map_err(|e| syn::Error::new(e.span(), format!("expected a priority: one of {ALLOWED}")))?;
    if !["critical", "high", "normal", "low", "background"].contains(&ident.to_string().as_str()) {
        return Err(syn::Error::new_spanned(&ident, format!("unknown priority `{ident}`; it is one of {ALLOWED}")));
    }
    Ok(ident)
}

/// `key = N` with N a whole number of at least 1.
pub(crate) fn at_least_one(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<LitInt> {
    let n: LitInt = meta.value()?.parse()?;
    if n.base10_parse::<u32>()? == 0 {
        return Err(syn::Error::new_spanned(n, format!("{key} must be at least 1")));
    }
    Ok(n)
}

/// `type_name = "SendWelcomeJob"`: the name of the generated struct, a Rust type name.
pub(crate) fn type_name(lit: LitStr) -> syn::Result<LitStr> {
    let value = lit.value();
    let valid = value.starts_with(|c: char| c.is_ascii_uppercase())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && syn::parse_str::<syn::Ident>(&value).is_ok();
    if !valid {
        return Err(syn::Error::new_spanned(
            lit,
            "type_name is the generated struct's name: a Rust type name such as \"SendWelcomeJob\"",
        ));
    }
    Ok(lit)
}

pub(crate) fn non_empty(lit: LitStr) -> syn::Result<LitStr> {
    if lit.value().trim().is_empty() {
        return Err(syn::Error::new_spanned(lit, "must not be empty"));
    }
    Ok(lit)
}

/// `timeout = "30s"` or `timeout = 30` (seconds), as milliseconds.
pub(crate) fn duration_ms(meta: &ParseNestedMeta<'_>) -> syn::Result<u64> {
    let value = meta.value()?;
    if value.peek(LitInt) {
        let secs: LitInt = value.parse()?;
        let n = secs.base10_parse::<u64>()?;
        if n == 0 {
            return Err(syn::Error::new_spanned(secs, "a duration must be greater than zero"));
        }
        return Ok(n * 1000);
    }
    let lit: LitStr = value.parse()?;
    parse_duration(&lit)
}

fn parse_duration(lit: &LitStr) -> syn::Result<u64> {
    let d = humantime::parse_duration(&lit.value()).map_err(|e| {
        syn::Error::new_spanned(lit, format!("invalid duration ({e}); write it like \"30s\" or \"5m\""))
    })?;
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(syn::Error::new_spanned(lit, "a duration must be greater than zero"));
    }
    Ok(ms)
}

/// `backoff(exponential, base = "1s", max = "1h", jitter = 0.1)`.
fn parse_backoff(meta: &ParseNestedMeta<'_>) -> syn::Result<TokenStream> {
    let mut kind: Option<syn::Ident> = None;
    let (mut base, mut max, mut jitter) = (1000u64, 3_600_000u64, 0.1f64);
    let mut max_set = false;
    meta.parse_nested_meta(|inner| {
        let key = inner.path.get_ident().map(ToString::to_string).unwrap_or_default();
        match key.as_str() {
            "fixed" | "linear" | "exponential" if kind.is_none() => {
                kind = inner.path.get_ident().cloned();
                Ok(())
            }
            "base" => {
                base = parse_duration(&inner.value()?.parse()?)?;
                Ok(())
            }
            "max" => {
                max = parse_duration(&inner.value()?.parse()?)?;
                max_set = true;
                Ok(())
            }
            "jitter" => {
                let lit: LitFloat = inner.value()?.parse()?;
                jitter = lit.base10_parse()?;
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(syn::Error::new_spanned(lit, "jitter is a fraction from 0.0 to 1.0"));
                }
                Ok(())
            }
            _ => Err(inner.error("expected `fixed`, `linear` or `exponential`, then `base`, `max`, `jitter`")),
        }
    })?;
    let kind = kind.ok_or_else(|| meta.error("backoff needs a kind: backoff(exponential, base = \"1s\")"))?;
    let ctor = format_ident!("{}", kind);
    if kind == "fixed" && !max_set {
        max = base;
    }
    Ok(backoff_tokens(&ctor, base, max, jitter))
}

fn backoff_tokens(ctor: &syn::Ident, base: u64, max: u64, jitter: f64) -> TokenStream {
    if ctor == "fixed" {
        quote! { ::forge::jobs::Backoff::fixed(::core::time::Duration::from_millis(#base)).with_jitter(#jitter) }
    } else {
        quote! {
            ::forge::jobs::Backoff::#ctor(
                ::core::time::Duration::from_millis(#base),
                ::core::time::Duration::from_millis(#max),
            ).with_jitter(#jitter)
        }
    }
}

/// `unique`, `unique(key)`, `unique(args, period = "1h")`.
fn parse_unique(meta: &ParseNestedMeta<'_>) -> syn::Result<TokenStream> {
    let mut by = quote! { ::forge::jobs::UniqueBy::Args };
    let mut period = quote! { ::core::option::Option::None };
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            let key = inner.path.get_ident().map(ToString::to_string).unwrap_or_default();
            match key.as_str() {
                "args" => by = quote! { ::forge::jobs::UniqueBy::Args },
                "key" => by = quote! { ::forge::jobs::UniqueBy::Key },
                "period" => {
                    let ms = parse_duration(&inner.value()?.parse()?)?;
                    period = quote! { ::core::option::Option::Some(::core::time::Duration::from_millis(#ms)) };
                }
                _ => return Err(inner.error("expected `args`, `key` or `period = \"1h\"`")),
            }
            Ok(())
        })?;
    }
    Ok(quote! { ::forge::jobs::Unique { by: #by, period: #period } })
}

/// `T` out of `-> Result<T, E>`.
pub(crate) fn result_ok_type(output: &ReturnType, expected: &str) -> syn::Result<Type> {
    let ReturnType::Type(_, ty) = output else {
        return Err(syn::Error::new(Span::call_site(), expected));
    };
    if let Type::Path(path) = ty.as_ref()
        && let Some(last) = path.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(GenericArgument::Type(ok)) = args.args.first()
    {
        return Ok(ok.clone());
    }
    Err(syn::Error::new_spanned(ty, expected))
}

pub(crate) fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect()
}
