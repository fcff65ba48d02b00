//! A bound on how deeply HCL text nests, checked before it is parsed.
//!
//! The `hcl` crate parses recursively, and every level of `[`, `{`, `(`,
//! template interpolation (`${`, `%{`), unary or binary operator and
//! conditional costs it stack frames: a few hundred levels (a few kilobytes
//! of text, e.g. `x = [[[[…`, `x = 1+1+1+…`) overflow a 2 MiB thread stack,
//! which aborts the whole process rather than failing the parse. Policies
//! and config files never need more than a handful of levels, so text whose
//! nesting may exceed [`MAX_DEPTH`] is refused before the parser sees it.
//!
//! The measure is an over-approximation computed by a small lexer that skips
//! comments, identifiers, numbers and string text (but not the
//! interpolations inside strings and heredocs): one level per open bracket,
//! string, heredoc or interpolation, plus one per operator since the last
//! `,` at the same level (an expression always ends at a comma; it may
//! continue across a newline, so newlines do not reset the count).

/// The deepest nesting accepted. Far above what any policy or config file
/// uses, far below what overflows the stack of a tokio worker thread even
/// in an unoptimised build.
pub const MAX_DEPTH: usize = 64;

/// Text nests deeper than [`MAX_DEPTH`]; `line` (1-based) is where the
/// bound was crossed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: nesting deeper than {MAX_DEPTH} levels")]
pub struct TooDeep {
    pub line: usize,
}

enum Frame<'a> {
    /// Expression text: the top level, a bracket, or an interpolation
    /// (closed by `}`); `ops` counts operators since the last comma.
    Code { ops: usize, top: bool },
    /// A quoted string (a template); `directives` counts its `%{`.
    Str { directives: usize },
    /// A heredoc (a template) ending at a line that starts, after spaces
    /// or tabs, with `marker` (as the parser decides).
    Heredoc { marker: &'a [u8], directives: usize },
}

/// The lexer's state: open frames and the operators and directives they
/// hold (which count as levels too).
struct Scan<'a> {
    b: &'a [u8],
    frames: Vec<Frame<'a>>,
    extra: usize,
}

impl<'a> Scan<'a> {
    fn depth(&self) -> usize {
        self.frames.len() - 1 + self.extra
    }

    fn pop(&mut self) {
        let released = match self.frames.pop() {
            Some(Frame::Code { ops, .. }) => ops,
            Some(Frame::Str { directives } | Frame::Heredoc { directives, .. }) => directives,
            None => 0,
        };
        self.extra -= released;
    }

    /// Counts one more operator (or directive) in the innermost frame.
    fn add(&mut self, n: usize) {
        if let Some(
            Frame::Code { ops: c, .. }
            | Frame::Str { directives: c }
            | Frame::Heredoc { directives: c, .. },
        ) = self.frames.last_mut()
        {
            *c += n;
            self.extra += n;
        }
    }

    /// One step in expression text; returns the next index.
    fn code(&mut self, i: usize, top: bool) -> usize {
        let b = self.b;
        let next = b.get(i + 1).copied();
        match b[i] {
            b'#' => line_end(b, i),
            b'/' if next == Some(b'/') => line_end(b, i),
            b'/' if next == Some(b'*') => find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2),
            b'"' => {
                self.frames.push(Frame::Str { directives: 0 });
                i + 1
            }
            b'<' if next == Some(b'<') => {
                let mut start = i + 2;
                if b.get(start) == Some(&b'-') {
                    start += 1;
                }
                let eol = line_end(b, start);
                let marker = b[start..eol].strip_suffix(b"\r").unwrap_or(&b[start..eol]);
                if marker.is_empty() || eol == b.len() {
                    // Not a heredoc the parser would open: two operators.
                    self.add(2);
                    return i + 2;
                }
                self.frames.push(Frame::Heredoc {
                    marker,
                    directives: 0,
                });
                // From the line ending, so that a first line holding the
                // marker ends the heredoc at once.
                eol
            }
            b'[' | b'{' | b'(' => {
                self.frames.push(Frame::Code { ops: 0, top: false });
                i + 1
            }
            b']' | b'}' | b')' => {
                if !top {
                    self.pop();
                }
                i + 1
            }
            b',' => {
                if let Some(Frame::Code { ops, .. }) = self.frames.last_mut() {
                    self.extra -= std::mem::take(ops);
                }
                i + 1
            }
            b'!' | b'-' | b'+' | b'*' | b'/' | b'%' | b'<' | b'>' | b'&' | b'|' | b'?' => {
                self.add(1);
                i + 1
            }
            b'=' if next == Some(b'=') => {
                self.add(1);
                i + 2
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                j
            }
            c if c.is_ascii_digit() => {
                let mut j = i + 1;
                while j < b.len() {
                    let d = b[j];
                    let exponent_sign = (d == b'+' || d == b'-') && matches!(b[j - 1], b'e' | b'E');
                    if d.is_ascii_alphanumeric() || d == b'.' || exponent_sign {
                        j += 1;
                    } else {
                        break;
                    }
                }
                j
            }
            _ => i + 1,
        }
    }

    /// One step through template text (a quoted string when `quoted`, else
    /// a heredoc); returns the next index.
    fn template(&mut self, i: usize, quoted: bool) -> usize {
        let b = self.b;
        let next = b.get(i + 1).copied();
        match b[i] {
            b'\\' if quoted => i + 2,
            b'"' if quoted => {
                self.pop();
                i + 1
            }
            // `$${` and `%%{` are escapes for the literal text.
            b'$' | b'%' if next == Some(b[i]) => i + 2,
            c @ (b'$' | b'%') if next == Some(b'{') => {
                // A directive (`%{ if }`, `%{ for }`) nests the template
                // text after it until its end: count it for the template.
                if c == b'%' {
                    self.add(1);
                }
                self.frames.push(Frame::Code { ops: 0, top: false });
                i + 2
            }
            b'\n' if !quoted => {
                // A heredoc ends at a line starting (after spaces or tabs)
                // with its marker.
                let mut k = i + 1;
                while k < b.len() && matches!(b[k], b' ' | b'\t') {
                    k += 1;
                }
                match self.frames.last() {
                    Some(Frame::Heredoc { marker, .. }) if b[k..].starts_with(marker) => {
                        let end = k + marker.len();
                        self.pop();
                        end
                    }
                    _ => i + 1,
                }
            }
            _ => i + 1,
        }
    }
}

/// Checks that `text` nests at most [`MAX_DEPTH`] levels deep.
pub fn check(text: &str) -> Result<(), TooDeep> {
    let mut scan = Scan {
        b: text.as_bytes(),
        frames: vec![Frame::Code { ops: 0, top: true }],
        extra: 0,
    };
    let mut i = 0;
    while i < scan.b.len() {
        if scan.depth() > MAX_DEPTH {
            return Err(TooDeep {
                line: scan.b[..i].iter().filter(|c| **c == b'\n').count() + 1,
            });
        }
        i = match scan.frames.last() {
            Some(Frame::Code { top, .. }) => {
                let top = *top;
                scan.code(i, top)
            }
            Some(Frame::Str { .. }) => scan.template(i, true),
            Some(Frame::Heredoc { .. }) => scan.template(i, false),
            None => break,
        };
    }
    if scan.depth() > MAX_DEPTH {
        return Err(TooDeep {
            line: scan.b.iter().filter(|c| **c == b'\n').count() + 1,
        });
    }
    Ok(())
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// The index of the newline ending the line at `i` (or the end).
fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(b.len(), |p| i + p)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_passes() {
        for text in [
            "",
            "path \"secret/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n",
            "path \"a\" { allowed_parameters = { \"x\" = [-1, -2, -3, -4] } }",
            "# [[[[[[[[\n// ((((((((\n/* {{{{{{{{ */\nx = 1\n",
            "x = \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"",
            "x = <<EOF\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\nEOF\ny = 1\n",
            "storage \"postgresql\" { connection_url = \"postgres://u@h/db?a=b&c=d\" }",
            "x = 1e-5\ny = my-key\nz = \"$${x}\"",
            "path \"identity/{{identity.entity.id}}/*\" { capabilities = [\"read\"] }",
        ] {
            assert_eq!(check(text), Ok(()), "{text:?}");
        }
        // Exactly at the bound.
        let at = format!("x = {}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(&at), Ok(()));
    }

    #[test]
    fn deep_text_is_refused_with_its_line() {
        let n = MAX_DEPTH + 1;
        for text in [
            format!("x = {}", "[".repeat(n)),
            format!("x = {}", "{ a = ".repeat(n)),
            format!("x = {}", "(".repeat(n)),
            format!("x = {}", "!".repeat(n)),
            format!("x = {}", "-".repeat(n)),
            format!("x = 1{}", "+1".repeat(n)),
            format!("x = 1{}", " ==1".repeat(n)),
            format!("x = {}1", "true ? 1 : ".repeat(n)),
            format!("x = {}", "\"${".repeat(n)),
            format!("x = {}", "\"%{ if ".repeat(n)),
            format!("x = <<EOF\n{}", "${[".repeat(n)),
            format!("x = [{}]", "1 +\n".repeat(n)),
            "a {\n".repeat(n),
            // Heredocs end where the parser ends them: after spaces, at a
            // line starting with the marker, even the first one.
            format!("x = <<EOF\nEOF{}", "[".repeat(n)),
            format!("x = <<-EOF\n  a\n\t EOFx = {}", "[".repeat(n)),
        ] {
            let e = check(&format!("\n\n{text}")).expect_err(&text);
            assert!(e.line >= 3, "{e}: {text:?}");
            assert!(e.to_string().contains("nesting deeper than"));
        }
    }

    #[test]
    fn commas_end_expressions() {
        let list = format!("x = [{}1]", "-1, ".repeat(10 * MAX_DEPTH));
        assert_eq!(check(&list), Ok(()));
    }

    #[test]
    fn unterminated_constructs_end_cleanly() {
        for text in [
            "x = \"abc",
            "x = <<EOF\nabc",
            "/* abc",
            "x = \"\\",
            "<<",
            "<<-",
            "\"${",
        ] {
            let _ = check(text);
        }
    }
}
