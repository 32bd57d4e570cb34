//! Reading a log file's last lines with bounded memory, for `/getLogs`' `Tail`.
//!
//! [`start_of_last_lines`] reads the file backwards, [`BLOCK`] bytes at a time,
//! until it has seen enough lines, and answers where they start; the caller then
//! reads forward from there in pieces. Memory stays at about one block
//! whatever the file's size: a `Tail: 1` on a 300 MB log reads 64 KiB.
//!
//! Each plugin says which lines count (a CRI log's partial `P` entries do not end
//! a line; lines older than `SinceTime` are not part of the answer) by a predicate
//! that sees the first [`LINE_HEAD`] bytes of every line.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes read at once, backwards or forwards.
pub const BLOCK: usize = 64 * 1024;

/// How much of a line's beginning the predicate of [`start_of_last_lines`] sees
/// (enough for a timestamp and a stream tag).
pub const LINE_HEAD: usize = 256;

/// The offset where the last `n` counted lines of `f[..end]` begin: just past the
/// `n+1`-th counted line from the end, or 0 when there are not that many.
///
/// A line is what lies between two `\n` (the last one may lack its `\n`);
/// `counts` sees its first [`LINE_HEAD`] bytes, without the `\n`, and says
/// whether it is one of the lines asked for (empty lines are asked about too,
/// as `str::lines` gives them). Lines that do not count are part of
/// the answer only when they lie after its start. `n == 0` answers 0.
pub fn start_of_last_lines(
    f: &File,
    end: u64,
    n: u64,
    mut counts: impl FnMut(&[u8]) -> bool,
) -> io::Result<u64> {
    if n == 0 || end == 0 {
        return Ok(0);
    }
    let mut block = vec![0u8; BLOCK];
    let mut head = Vec::with_capacity(LINE_HEAD);
    let mut seen: u64 = 0;
    // the line being scanned ends at `line_end` (exclusive, its '\n' not included)
    let mut line_end = end;
    // a '\n' that is the file's last byte ends the last line, it does not start an empty one
    let mut pos = end;
    let mut skip_last_newline = true;
    let mut len = 0;
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK as u64);
        len = (pos - start) as usize;
        f.read_exact_at(&mut block[..len], start)?;
        for i in (0..len).rev() {
            if block[i] != b'\n' {
                continue;
            }
            let nl = start + i as u64;
            if skip_last_newline && nl + 1 == end {
                skip_last_newline = false;
                line_end = nl;
                continue;
            }
            skip_last_newline = false;
            // the line (nl, line_end) is complete: does it count?
            let line_start = nl + 1;
            if counted(
                f,
                &block[..len],
                start,
                line_start,
                line_end,
                &mut head,
                &mut counts,
            )? {
                seen += 1;
                if seen > n {
                    return Ok(line_end + 1);
                }
            }
            line_end = nl;
        }
        skip_last_newline = false;
        pos = start;
    }
    // the first line of the file (the last block read starts at 0)
    if counted(f, &block[..len], 0, 0, line_end, &mut head, &mut counts)? {
        seen += 1;
        if seen > n {
            return Ok(line_end + 1);
        }
    }
    Ok(0)
}

/// The offset just past the last `\n` of `f[..end]` (the end of its last
/// complete line), 0 when there is none; reads backwards a block at a time.
pub fn end_of_last_line(f: &File, end: u64) -> io::Result<u64> {
    let mut block = vec![0u8; BLOCK.min(end as usize)];
    let mut pos = end;
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK as u64);
        let len = (pos - start) as usize;
        f.read_exact_at(&mut block[..len], start)?;
        if let Some(i) = block[..len].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

/// Ask `counts` about the line `[line_start, line_end)`, from the block in memory
/// (which starts at file offset `block_start`) when it holds the line's head, else
/// from the file.
fn counted(
    f: &File,
    block: &[u8],
    block_start: u64,
    line_start: u64,
    line_end: u64,
    head: &mut Vec<u8>,
    counts: &mut impl FnMut(&[u8]) -> bool,
) -> io::Result<bool> {
    let want = (line_end - line_start).min(LINE_HEAD as u64) as usize;
    let off = (line_start - block_start) as usize;
    if off + want <= block.len() {
        return Ok(counts(&block[off..off + want]));
    }
    head.resize(want, 0);
    f.read_exact_at(head, line_start)?;
    Ok(counts(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(content).unwrap();
        t.flush().unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    /// The last `n` lines by the obvious method, to compare with.
    fn naive(content: &[u8], n: usize) -> Vec<u8> {
        if content.is_empty() {
            return Vec::new();
        }
        let text = content.strip_suffix(b"\n").unwrap_or(content);
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        let keep = &lines[lines.len().saturating_sub(n)..];
        let mut out = keep.join(&b'\n');
        if content.ends_with(b"\n") {
            out.push(b'\n');
        }
        out
    }

    fn tail(content: &[u8], n: u64) -> Vec<u8> {
        let (_t, f) = file(content);
        let s = start_of_last_lines(&f, content.len() as u64, n, |_| true).unwrap();
        content[s as usize..].to_vec()
    }

    #[test]
    fn small_files() {
        assert_eq!(tail(b"", 3), b"");
        assert_eq!(tail(b"a\nb\nc\n", 0), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 1), b"c\n");
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 3), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 9), b"a\nb\nc\n");
        // no trailing newline: the last line still counts
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"only", 1), b"only");
        assert_eq!(tail(b"\n", 1), b"\n");
        assert_eq!(tail(b"a\n\n\nb\n", 2), b"\nb\n");
        assert_eq!(tail(b"\nb", 2), b"\nb");
    }

    #[test]
    fn many_blocks_and_lines_across_block_edges() {
        // line lengths chosen so that lines straddle every block boundary
        let mut content = Vec::new();
        let mut i = 0u32;
        while content.len() < 5 * BLOCK + 123 {
            let len = (i * 7919) % 300;
            content.extend_from_slice(format!("{i:06} ").as_bytes());
            content.extend(std::iter::repeat_n(b'x', len as usize));
            content.push(b'\n');
            i += 1;
        }
        for n in [1, 2, 10, 100, 1000, i as u64 - 1, i as u64, i as u64 + 5] {
            assert_eq!(tail(&content, n), naive(&content, n as usize), "n={n}");
        }
        content.extend_from_slice(b"no newline at the end");
        for n in [1, 3, 500] {
            assert_eq!(tail(&content, n), naive(&content, n as usize), "n={n}");
        }
    }

    #[test]
    fn a_line_longer_than_a_block() {
        let mut content = b"first\n".to_vec();
        content.extend(std::iter::repeat_n(b'y', 3 * BLOCK + 17));
        content.extend_from_slice(b"\nlast\n");
        assert_eq!(tail(&content, 1), b"last\n");
        assert_eq!(tail(&content, 2), &content[6..]);
        assert_eq!(tail(&content, 3), &content[..]);
    }

    #[test]
    fn only_counted_lines_count_and_heads_are_seen() {
        // "P" lines continue the next one: the tail starts after a counted line
        let mut content = Vec::new();
        for i in 0..4000 {
            let tag = if i % 3 == 0 { "P" } else { "F" };
            content.extend_from_slice(format!("{tag} {i}\n").as_bytes());
        }
        let (_t, f) = file(&content);
        let mut heads = 0;
        let s = start_of_last_lines(&f, content.len() as u64, 2, |l| {
            heads += 1;
            l.starts_with(b"F")
        })
        .unwrap();
        assert_eq!(&content[s as usize..], b"P 3996\nF 3997\nF 3998\nP 3999\n");
        assert_eq!(heads, 5, "stopped after the third counted line");
        // a line's head is cut at LINE_HEAD, even when it starts at a block's end
        let mut content = vec![b'a'; BLOCK - 3];
        content.push(b'\n');
        content.extend(std::iter::repeat_n(b'b', 1000));
        content.push(b'\n');
        let (_t, f) = file(&content);
        let mut lens = Vec::new();
        start_of_last_lines(&f, content.len() as u64, 5, |l| {
            lens.push((l.len(), l[0]));
            true
        })
        .unwrap();
        assert_eq!(lens, vec![(LINE_HEAD, b'b'), (LINE_HEAD, b'a')]);
    }

    #[test]
    fn end_before_the_file_end_is_respected() {
        let content = b"a\nb\nc\nd\n";
        let (_t, f) = file(content);
        // only "a\nb\n" is asked about
        assert_eq!(start_of_last_lines(&f, 4, 1, |_| true).unwrap(), 2);
    }

    #[test]
    fn end_of_the_last_complete_line() {
        let end = |c: &[u8]| {
            let (_t, f) = file(c);
            end_of_last_line(&f, c.len() as u64).unwrap()
        };
        assert_eq!(end(b""), 0);
        assert_eq!(end(b"partial"), 0);
        assert_eq!(end(b"a\nb\n"), 4);
        assert_eq!(end(b"a\nb\npart"), 4);
        let mut big = b"x\n".to_vec();
        big.extend(std::iter::repeat_n(b'p', 3 * BLOCK));
        assert_eq!(end(&big), 2);
    }
}
