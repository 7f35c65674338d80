//! Macro compile checks (`#[forge::job]`, `#[forge::cron]`, `#[forge::workflow]` and the function macros): every attribute accepted where valid, and a wrong one is a
//! compile error pointing at it (snapshots in `tests/ui/fail/*.stderr`).

#[test]
fn job_macro() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
