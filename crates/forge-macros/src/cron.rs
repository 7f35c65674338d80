//! `#[forge::cron("expr", ...)]`.

use forge_core::schedule::CronSchedule;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::{ParseStream, Parser};
use syn::{FnArg, ItemFn, LitInt, LitStr, Token};

use crate::job::{JobKind, at_least_one, duration_ms, generated_module, job_kind, non_empty, pascal_case, type_name};

struct Attrs {
    expression: LitStr,
    name: Option<LitStr>,
    type_name: Option<LitStr>,
    timezone: Option<LitStr>,
    catch_up: bool,
    catch_up_limit: Option<LitInt>,
    overlap_allow: bool,
    queue: Option<LitStr>,
    max_attempts: Option<LitInt>,
    timeout_ms: Option<u64>,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (expression, rest) = (|input: ParseStream<'_>| {
        let expression: LitStr = input.parse().map_err(|e| {
            syn::Error::new(e.span(), "#[forge::cron] starts with the schedule, as in #[forge::cron(\"*/5 * * * *\")]")
        })?;
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
        Ok((expression, input.parse::<TokenStream>()?))
    })
    .parse2(attr)?;
    let mut attrs = Attrs {
        expression,
        name: None,
        type_name: None,
        timezone: None,
        catch_up: false,
        catch_up_limit: None,
        overlap_allow: false,
        queue: None,
        max_attempts: None,
        timeout_ms: None,
    };
    syn::meta::parser(|meta| {
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        match key.as_str() {
            "name" => attrs.name = Some(non_empty(meta.value()?.parse()?)?),
            "type_name" => attrs.type_name = Some(type_name(meta.value()?.parse()?)?),
            "timezone" => attrs.timezone = Some(meta.value()?.parse()?),
            "catch_up" => attrs.catch_up = true,
            "catch_up_limit" => attrs.catch_up_limit = Some(at_least_one(&meta, "catch_up_limit")?),
            "overlap" => {
                let v: LitStr = meta.value()?.parse()?;
                attrs.overlap_allow = match v.value().as_str() {
                    "skip" => false,
                    "allow" => true,
                    _ => return Err(syn::Error::new_spanned(v, "overlap is \"skip\" or \"allow\"")),
                };
            }
            "queue" => attrs.queue = Some(non_empty(meta.value()?.parse()?)?),
            "max_attempts" => attrs.max_attempts = Some(at_least_one(&meta, "max_attempts")?),
            "timeout" => attrs.timeout_ms = Some(duration_ms(&meta)?),
            _ => {
                return Err(meta.error(
                    "unknown #[forge::cron] attribute; expected one of name, type_name, timezone, catch_up, \
                     catch_up_limit, overlap, queue, max_attempts, timeout",
                ));
            }
        }
        Ok(())
    })
    .parse2(rest)?;

    let func: ItemFn = syn::parse2(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(func.sig.fn_token, "#[forge::cron] needs an `async fn`"));
    }
    if func.sig.inputs.len() != 1 || matches!(func.sig.inputs.first(), Some(FnArg::Receiver(_))) {
        return Err(syn::Error::new_spanned(
            &func.sig.inputs,
            "#[forge::cron] functions take one argument: `ctx: &CronContext`",
        ));
    }

    // The schedule is checked here, at compile time, and again at start-up.
    let timezone = attrs.timezone.as_ref().map(LitStr::value).unwrap_or_else(|| "UTC".to_owned());
    if let Err(e) = CronSchedule::parse(&attrs.expression.value(), &timezone) {
        let span = match (&e, &attrs.timezone) {
            (forge_core::schedule::ScheduleError::TimeZone(_), Some(tz)) => tz.span(),
            _ => attrs.expression.span(),
        };
        return Err(syn::Error::new(span, e.to_string()));
    }

    let fn_name = &func.sig.ident;
    let vis = &func.vis;
    let struct_name = match &attrs.type_name {
        Some(name) => format_ident!("{}", name.value(), span = name.span()),
        None => format_ident!("{}", pascal_case(&fn_name.to_string()), span = fn_name.span()),
    };
    let module = generated_module(&struct_name);
    let name = attrs.name.map(|n| n.value()).unwrap_or_else(|| fn_name.to_string());
    let kind = format!("cron:{name}");
    let expression = &attrs.expression;
    let catch_up = attrs.catch_up;
    let catch_up_limit = attrs.catch_up_limit.map(|n| quote!(#n)).unwrap_or_else(|| quote!(10));
    let overlap = if attrs.overlap_allow { quote!(Allow) } else { quote!(Skip) };
    let max_attempts = attrs.max_attempts.map(|n| quote!(#n)).unwrap_or_else(|| quote!(3));
    let mut options = vec![quote! { options.max_attempts = #max_attempts; }];
    if let Some(queue) = &attrs.queue {
        options.push(quote! { options.queue = #queue; });
    }
    if let Some(ms) = attrs.timeout_ms {
        options.push(quote! { options.timeout = ::core::time::Duration::from_millis(#ms); });
    }
    let doc = format!("The `{name}` cron (`{}`), declared by `#[forge::cron]` on `{fn_name}`.", expression.value());

    let job = job_kind(JobKind {
        doc: &doc,
        vis,
        struct_name: &struct_name,
        kind: &kind,
        args_ty: quote!(::forge::cron::CronArgs),
        output_ty: quote!(()),
        options: &options,
        run: quote! {
            let cron = ::forge::cron::CronContext::new(ctx.clone(), #name, args);
            async move { #fn_name(&cron).await }
        },
    });
    Ok(quote! {
        #func
        #job

        ::forge::__private::inventory::submit! {
            ::forge::cron::CronRegistration {
                name: #name,
                expression: #expression,
                timezone: #timezone,
                catch_up: #catch_up,
                catch_up_limit: #catch_up_limit,
                overlap: ::forge::cron::Overlap::#overlap,
                job_kind: #kind,
                job_options: <#module::#struct_name as ::forge::jobs::Job>::options,
            }
        }
    })
}
