//! ACL check time as the policy set grows (issue 12: "ACL check time flat
//! from 10 to 1,000 policies"). Each policy has 20 rules: exact paths,
//! `*` prefix globs and `+` segment wildcards over its own team's paths,
//! and one rule every policy shares; a token holds all the policies. The
//! check is timed on paths that hit an exact rule, a glob, a `+` rule and
//! nothing.
//!
//! ```sh
//! cargo bench -p bulwark-policy --bench acl_growth
//! ```

use std::hint::black_box;
use std::time::Instant;

use bulwark_policy::{parse_policy, Acl, Operation, ParsedPolicy};

fn policy(i: usize) -> String {
    let mut text = String::new();
    for j in 0..8 {
        text.push_str(&format!(
            "path \"secret/data/team{i}/app{j}/config\" {{ capabilities = [\"read\"] }}\n"
        ));
    }
    for j in 0..8 {
        text.push_str(&format!(
            "path \"secret/data/team{i}/svc{j}/*\" {{ capabilities = [\"read\", \"list\"] }}\n"
        ));
    }
    for j in 0..3 {
        text.push_str(&format!(
            "path \"kv{j}/+/team{i}/*\" {{ capabilities = [\"create\", \"update\"] }}\n"
        ));
    }
    text.push_str("path \"sys/health\" { capabilities = [\"read\"] }\n");
    text
}

fn main() {
    println!("policies  rules   exact(ns)  glob(ns)  plus(ns)  miss(ns)  compile(ms)");
    for n in [10usize, 100, 1_000] {
        let parsed: Vec<(String, ParsedPolicy)> = (0..n)
            .map(|i| {
                let p = parse_policy(&policy(i)).expect("policy parses");
                (format!("p{i}"), p)
            })
            .collect();
        let t = Instant::now();
        let acl = Acl::new(parsed.iter().map(|(name, p)| (name.as_str(), p)));
        let compile = t.elapsed();
        let mid = n / 2;
        let cases = [
            format!("secret/data/team{mid}/app3/config"),
            format!("secret/data/team{mid}/svc5/a/b/c"),
            format!("kv1/anything/team{mid}/x"),
            "secret/data/nobody/here".to_string(),
        ];
        let mut row = Vec::new();
        for path in &cases {
            let rounds = 200_000;
            let t = Instant::now();
            for _ in 0..rounds {
                black_box(acl.authorize(black_box(path), Operation::Read, false));
            }
            row.push(t.elapsed().as_nanos() as f64 / rounds as f64);
        }
        println!(
            "{n:>8} {:>6} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>12.1}",
            n * 20,
            row[0],
            row[1],
            row[2],
            row[3],
            compile.as_secs_f64() * 1e3
        );
    }
}
