//! Keras's `model.summary()` text, reproduced character for character
//! (`keras.src.utils.summary_utils.print_summary`, rendered by `rich` as
//! Keras does when stdout is not a terminal): a heavy-headed box table with
//! one row per layer and rules between rows, then the parameter counts with
//! Keras's byte sizes (`34,826 (136.04 KB)`).
//!
//! Column widths follow Keras: `int(position·line_length)` differences
//! (positions `[0.45, 0.80, 1.0]`, or `[0.3, 0.56, 0.74, 1.0]` with the
//! "Connected to" column), then rich's shrinking of the padded widths to the
//! table width (`ratio_reduce`, Python's half-to-even rounding); cells wrap
//! at spaces and a word wider than its cell ends in `…` (rich's `ellipsis`
//! overflow).

use crate::error::{Error, Result};

/// Keras's line length for a summary printed to a non-terminal:
/// `min(88 or 108, shutil.get_terminal_size().columns - 4)` with the
/// fallback terminal of 80 columns.
pub const DEFAULT_LINE_LENGTH: usize = 76;

/// One column: its header and whether its cells are right-aligned.
pub(crate) struct Column {
    pub header: &'static str,
    pub right: bool,
}

/// The columns of a branching model; a sequential-like model shows the
/// first three (no "Connected to").
pub(crate) const COLUMNS: [Column; 4] = [
    Column {
        header: "Layer (type)",
        right: false,
    },
    Column {
        header: "Output Shape",
        right: false,
    },
    Column {
        header: "Param #",
        right: true,
    },
    Column {
        header: "Connected to",
        right: false,
    },
];

/// Keras's relative column positions for `n` (3 or 4) columns.
fn positions(n: usize) -> &'static [f64] {
    if n == 3 {
        &[0.45, 0.80, 1.0]
    } else {
        &[0.3, 0.56, 0.74, 1.0]
    }
}

/// Python's `round` (half to even) of a non-negative float.
fn round_half_even(x: f64) -> usize {
    let f = x.floor();
    let d = x - f;
    let r = if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
        f + 1.0
    } else {
        f
    };
    r as usize
}

/// rich's `ratio_reduce(total, [1; n], values, values)`: takes `total`
/// cells off the columns as evenly as rounding allows, first columns first.
fn reduce_evenly(total: usize, values: &[usize]) -> Vec<usize> {
    let mut remaining = total;
    let mut ratio = values.len();
    values
        .iter()
        .map(|&v| {
            let d = round_half_even(remaining as f64 / ratio as f64).min(v);
            remaining -= d.min(remaining);
            ratio -= 1;
            v - d
        })
        .collect()
}

/// The content width (padding excluded) of every column of a table
/// `line_length` cells wide, as rich lays out Keras's summary table.
fn content_widths(n: usize, line_length: usize) -> Result<Vec<usize>> {
    let mut widths = Vec::with_capacity(n);
    let mut current = 0usize;
    for &p in positions(n) {
        let w = ((p * line_length as f64) as usize).saturating_sub(current);
        if w < 4 {
            return Err(Error::config(
                "summary line_length",
                format!("{line_length} is too narrow for the summary (Keras: insufficient console width)"),
            ));
        }
        widths.push(w);
        current += w;
    }
    // Fixed widths plus one cell of padding each side; the borders take n + 1.
    let padded: Vec<usize> = widths.iter().map(|w| w + 2).collect();
    let max = line_length.saturating_sub(n + 1);
    let total: usize = padded.iter().sum();
    let padded = if total > max {
        reduce_evenly(total - max, &padded)
    } else {
        padded
    };
    Ok(padded.iter().map(|w| w.saturating_sub(2)).collect())
}

/// `s` cut to `width` cells with a final `…` when longer (rich's `ellipsis`).
fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// rich's word wrap of `text` into lines of at most `width` cells (words
/// are runs of non-spaces with their following spaces; no folding), each
/// padded to `width`, left- or right-aligned.
fn wrap(text: &str, width: usize, right: bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    // Words: optional leading spaces, non-spaces, trailing spaces.
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        while i < chars.len() && chars[i] != ' ' {
            i += 1;
        }
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        words.push((start, i));
    }
    let mut breaks: Vec<usize> = Vec::new();
    let mut offset = 0usize;
    for &(start, end) in &words {
        let word: String = chars[start..end].iter().collect();
        let len = word.trim_end().chars().count();
        if width >= offset && width - offset >= len {
            offset += end - start;
        } else if len > width {
            if start > 0 {
                breaks.push(start);
            }
            offset = end - start;
        } else if offset > 0 && start > 0 {
            breaks.push(start);
            offset = end - start;
        }
    }
    let mut bounds = vec![0];
    bounds.extend(breaks);
    bounds.push(chars.len());
    bounds
        .windows(2)
        .map(|w| {
            let line: String = chars[w[0]..w[1]].iter().collect();
            // rstrip_end: whitespace beyond the width goes.
            let line = if line.chars().count() > width {
                let kept = line.trim_end();
                if kept.chars().count() < width {
                    format!("{kept:<width$}")
                } else {
                    kept.to_string()
                }
            } else {
                line
            };
            if right {
                let l = ellipsis(line.trim_end(), width);
                format!("{l:>width$}")
            } else {
                let l = ellipsis(&line, width);
                format!("{l:<width$}")
            }
        })
        .collect()
}

/// Keras's thousands separators: `34826` → `34,826`.
pub(crate) fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras's `readable_memory_size`: `136.04 KB`, `80.00 B` (powers of 1024).
pub(crate) fn readable_memory_size(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes;
    for unit in &units[..units.len() - 1] {
        if size / 1024.0 < 1.0 {
            return format!("{size:.2} {unit}");
        }
        size /= 1024.0;
    }
    format!("{size:.2} PB")
}

/// The boxed table of Keras's summary: the title line `Model: "name"`, the
/// header, one row (of `columns.len()` cells) per layer with rules between
/// rows. Every line ends with `\n`.
pub(crate) fn table(
    name: &str,
    columns: &[Column],
    rows: &[Vec<String>],
    line_length: usize,
) -> Result<String> {
    let widths = content_widths(columns.len(), line_length)?;
    let rule = |l: char, fill: char, mid: char, r: char| -> String {
        let parts: Vec<String> = widths
            .iter()
            .map(|w| fill.to_string().repeat(w + 2))
            .collect();
        format!("{l}{}{r}\n", parts.join(&mid.to_string()))
    };
    let render = |cells: &[String], edge: char| -> String {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((c, col), &w)| wrap(c, w, col.right))
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let mut out = String::new();
        for line in 0..height {
            out.push(edge);
            for (lines, &w) in wrapped.iter().zip(&widths) {
                let cell = lines.get(line).cloned().unwrap_or_else(|| " ".repeat(w));
                out.push(' ');
                out.push_str(&cell);
                out.push(' ');
                out.push(edge);
            }
            out.push('\n');
        }
        out
    };
    let mut out = format!("Model: \"{name}\"\n");
    out.push_str(&rule('┏', '━', '┳', '┓'));
    let headers: Vec<String> = columns.iter().map(|c| c.header.to_string()).collect();
    out.push_str(&render(&headers, '┃'));
    out.push_str(&rule('┡', '━', '╇', '┩'));
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push_str(&rule('├', '─', '┼', '┤'));
        }
        out.push_str(&render(r, '│'));
    }
    out.push_str(&rule('└', '─', '┴', '┘'));
    Ok(out)
}

/// Keras's three count lines: total, trainable and non-trainable
/// parameters with their sizes in bytes.
pub(crate) fn counts(trainable: (usize, usize), non_trainable: (usize, usize)) -> String {
    let line = |what: &str, (n, bytes): (usize, usize)| {
        format!(
            " {what} params: {} ({})\n",
            thousands(n),
            readable_memory_size(bytes as f64)
        )
    };
    let total = (trainable.0 + non_trainable.0, trainable.1 + non_trainable.1);
    format!(
        "{}{}{}",
        line("Total", total),
        line("Trainable", trainable),
        line("Non-trainable", non_trainable)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_widths_sizes_and_numbers() {
        // Observed in Keras 3.15.1 at line length 76: contents 31/22/13 and 19/17/10/17.
        assert_eq!(content_widths(3, 76).unwrap(), vec![31, 22, 13]);
        assert_eq!(content_widths(4, 76).unwrap(), vec![19, 17, 10, 17]);
        assert!(content_widths(3, 10).is_err());
        assert_eq!(thousands(34826), "34,826");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(readable_memory_size(139304.0), "136.04 KB");
        assert_eq!(readable_memory_size(80.0), "80.00 B");
        assert_eq!(readable_memory_size(0.0), "0.00 B");
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_cuts_long_words() {
        assert_eq!(
            wrap("batch_normalization (BatchNormalization)", 31, false),
            vec![
                "batch_normalization            ",
                "(BatchNormalization)           "
            ]
        );
        assert_eq!(
            wrap("dense_1[0][0], dense_2[0][0]", 17, false),
            vec!["dense_1[0][0],   ", "dense_2[0][0]    "]
        );
        assert_eq!(wrap("abcdefgh", 5, false), vec!["abcd…"]);
        assert_eq!(wrap("320", 6, true), vec!["   320"]);
    }
}
