//! Mutators: bytes (flips, splices, truncations, dictionary tokens), JSON
//! values (numbers to huge/negative/fractional/NaN strings, wrong types,
//! dropped keys, duplicated array elements), safetensors headers (lying
//! lengths, shapes, dtypes, offsets) and zip archives (one member mutated,
//! re-packed). Every mutator is deterministic in its [`Rng`] and never
//! returns more than [`MAX_LEN`] bytes.

use lossgraph_ir::rng::SplitMix64 as Rng;
use serde_json::{Map, Number, Value};
use std::io::{Read, Write};

/// Largest mutated input (bytes); longer results are truncated.
pub const MAX_LEN: usize = 1 << 20;

/// Numbers that break size and index arithmetic: zero, negatives, i32/i64/u64
/// edges, 2^62 (products wrap), huge and fractional values.
pub const NUMBERS: [&str; 22] = [
    "0",
    "-1",
    "1",
    "2",
    "-2147483648",
    "2147483647",
    "2147483648",
    "4294967296",
    "65536",
    "1000000000",
    "4611686018427387904",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "-9223372036854775808",
    "0.5",
    "1.5",
    "-0.0",
    "1e30",
    "1e308",
    "-1e308",
    "5e-324",
];

/// Strings a number or a name is replaced by.
const STRINGS: [&str; 8] = [
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "",
    "1e9",
    "null",
    "ünï/../x",
];

/// Picks one of `v` (which must not be empty).
pub fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len())]
}

/// 1 to 4 stacked byte mutations of `input`; `corpus` is spliced from and
/// `dict` holds tokens to insert (both may be empty).
pub fn bytes(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        byte_once(rng, &mut out, corpus, dict);
    }
    out.truncate(MAX_LEN);
    out
}

fn byte_once(rng: &mut Rng, out: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[Vec<u8>]) {
    let len = out.len();
    let at = |rng: &mut Rng| rng.below(len.max(1));
    match rng.below(11) {
        0 if len > 0 => {
            let i = at(rng);
            out[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = at(rng);
            out[i] = *pick(rng, &[0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'[', b',', b'\n']);
        }
        2 if len > 0 => {
            let i = at(rng);
            out[i] = rng.next_u64() as u8;
        }
        3 if len > 0 => {
            // Delete a range.
            let i = at(rng);
            let n = 1 + rng.below((len - i).min(64));
            out.drain(i..i + n);
        }
        4 if len > 0 => {
            // Duplicate a range.
            let i = at(rng);
            let n = 1 + rng.below((len - i).min(256));
            let chunk = out[i..i + n].to_vec();
            let j = rng.below(len + 1);
            out.splice(j..j, chunk);
        }
        5 => out.truncate(rng.below(len + 1)),
        6 => {
            // Overwrite a run of digits (or any position) with an interesting number.
            let num = pick(rng, &NUMBERS).as_bytes();
            let i = rng.below(len + 1);
            let end = (i..len)
                .find(|&k| !(out[k].is_ascii_digit() || b"-.eE+".contains(&out[k])))
                .unwrap_or(len);
            out.splice(i..end, num.iter().copied());
        }
        7 if !dict.is_empty() => {
            let tok = pick(rng, dict).clone();
            let j = rng.below(len + 1);
            if rng.below(2) == 0 || j == len {
                out.splice(j..j, tok);
            } else {
                let end = (j + tok.len()).min(len);
                out.splice(j..end, tok);
            }
        }
        8 if !corpus.is_empty() => {
            // Splice: our head, another input's tail.
            let other = pick(rng, corpus);
            let i = rng.below(len + 1);
            let j = rng.below(other.len() + 1);
            out.truncate(i);
            out.extend_from_slice(&other[j..]);
        }
        9 if len > 0 => {
            // Write an interesting little-endian u32/u64 (binary formats).
            let v: u64 = *pick(rng, &[0, 1, u32::MAX as u64, 1 << 31, 1 << 62, u64::MAX]);
            let w = if rng.below(2) == 0 { 4 } else { 8 };
            let i = at(rng);
            for (k, b) in v.to_le_bytes()[..w].iter().enumerate() {
                if let Some(slot) = out.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        _ => {
            let j = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let fresh: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(j..j, fresh);
        }
    }
}

/// Every node of `v` as a path of object keys / array indices (the root is `[]`).
fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                prefix.push(Step::Key(k.clone()));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// One step of a path into a JSON value.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn node_mut<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match (s, v) {
        (Step::Key(k), Value::Object(m)) => m.get_mut(k).expect("path from paths()"),
        (Step::Index(i), Value::Array(a)) => &mut a[*i],
        _ => unreachable!("path from paths()"),
    })
}

fn number(text: &str) -> Value {
    serde_json::from_str::<Number>(text)
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(text.to_string()))
}

/// One of [`NUMBERS`] as a JSON number (a string if JSON cannot hold it).
fn any_number(rng: &mut Rng) -> Value {
    number(NUMBERS[rng.below(NUMBERS.len())])
}

/// 1 to 3 semantic mutations of `v` in place: a random node's number
/// becomes an interesting number or a NaN string, a value takes the wrong
/// type, an object loses or gains a key, an array element is dropped or
/// duplicated (duplicated layers, names, inputs), a string grows past 65,535
/// characters, or a node is replaced by another node of the same document.
pub fn json(rng: &mut Rng, v: &mut Value) {
    for _ in 0..1 + rng.below(3) {
        json_once(rng, v);
    }
}

fn json_once(rng: &mut Rng, root: &mut Value) {
    let mut all = Vec::new();
    paths(root, &mut Vec::new(), &mut all);
    let path = pick(rng, &all).clone();
    let donor = {
        let p = pick(rng, &all).clone();
        node_mut(root, &p).clone()
    };
    let node = node_mut(root, &path);
    match node {
        Value::Number(_) if rng.below(4) != 0 => {
            *node = if rng.below(5) == 0 {
                Value::String(pick(rng, &STRINGS).to_string())
            } else {
                any_number(rng)
            };
        }
        Value::Object(m) if !m.is_empty() && rng.below(2) == 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = pick(rng, &keys).clone();
            if rng.below(3) == 0 {
                // Same value under a second key.
                let val = m[&k].clone();
                m.insert(format!("{k}_"), val);
            } else {
                m.remove(&k);
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(2) == 0 => {
            let i = rng.below(a.len());
            match rng.below(4) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let e = a[i].clone();
                    a.insert(i, e);
                }
                2 => {
                    let e = a[i].clone();
                    let n = 2 + rng.below(200);
                    a.extend(std::iter::repeat_n(e, n));
                }
                _ => {
                    let j = rng.below(a.len());
                    a.swap(i, j);
                }
            }
        }
        Value::String(s) if rng.below(3) != 0 => {
            *s = match rng.below(4) {
                0 => "a".repeat(70_000),
                1 => pick(rng, &STRINGS).to_string(),
                2 => format!("{s}{s}"),
                _ => match &donor {
                    Value::String(d) => d.clone(),
                    _ => String::new(),
                },
            };
        }
        Value::Bool(b) if rng.below(2) == 0 => *b = !*b,
        _ => {
            *node = match rng.below(8) {
                0 => Value::Null,
                1 => Value::Array(vec![]),
                2 => Value::Object(Map::new()),
                3 => Value::String("x".into()),
                4 => Value::Bool(true),
                5 => any_number(rng),
                6 => Value::Array(vec![node.clone(), node.clone()]),
                _ => donor,
            }
        }
    }
}

/// A mutation of a JSON text: semantic ([`json`]) when it parses (three times
/// in four), else bytes.
pub fn json_text(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(4) != 0 {
        if let Ok(mut v) = serde_json::from_slice::<Value>(input) {
            json(rng, &mut v);
            let mut out = serde_json::to_vec(&v).expect("a Value serialises");
            out.truncate(MAX_LEN);
            return out;
        }
    }
    bytes(rng, input, corpus, dict)
}

/// The header and the data of a safetensors file (`None` when the first 8
/// bytes do not give a JSON header inside the file).
pub fn split_safetensors(input: &[u8]) -> Option<(Value, &[u8])> {
    let n = u64::from_le_bytes(input.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(n).ok()?)?;
    let header = serde_json::from_slice(input.get(8..end)?).ok()?;
    Some((header, &input[end..]))
}

/// A safetensors file of `header` and `data` (the length field tells the truth).
pub fn join_safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).expect("a Value serialises");
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A mutation of a safetensors file: one tensor's shape, dtype or offsets
/// changed (the header length still true), any header mutation, a lying
/// header length, NaN/Inf/huge values in the data, or plain bytes.
pub fn safetensors(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let Some((mut header, data)) = split_safetensors(input) else {
        return bytes(rng, input, corpus, &[]);
    };
    let mut data = data.to_vec();
    let names: Vec<String> = header
        .as_object()
        .map(|m| m.keys().filter(|k| *k != "__metadata__").cloned().collect())
        .unwrap_or_default();
    match rng.below(8) {
        0..=2 if !names.is_empty() => {
            let name = pick(rng, &names).clone();
            let t = &mut header[&name];
            match rng.below(5) {
                0 => {
                    // A shape with one extent changed, added or removed.
                    if let Some(s) = t.get_mut("shape").and_then(Value::as_array_mut) {
                        match rng.below(3) {
                            0 if !s.is_empty() => {
                                let i = rng.below(s.len());
                                s[i] = any_number(rng);
                            }
                            1 => s.push(number(["1", "2", "0", "3"][rng.below(4)])),
                            _ => {
                                s.pop();
                            }
                        }
                    }
                }
                1 => {
                    let dt = *pick(
                        rng,
                        &[
                            "F16", "BF16", "F64", "I64", "I32", "F32", "BOOL", "U8", "I8",
                        ],
                    );
                    if let Some(o) = t.as_object_mut() {
                        o.insert("dtype".into(), Value::String(dt.into()));
                    }
                }
                2 => {
                    if let Some(o) = t.get_mut("data_offsets").and_then(Value::as_array_mut) {
                        if !o.is_empty() {
                            let i = rng.below(o.len());
                            o[i] = any_number(rng);
                        }
                    }
                }
                3 => {
                    // Rename (a weight that no layer owns, or a duplicate of another's name).
                    let v = header[&name].clone();
                    let m = header.as_object_mut().expect("names came from an object");
                    m.remove(&name);
                    let new = if rng.below(2) == 0 {
                        format!("{name}x")
                    } else {
                        pick(rng, &names).clone()
                    };
                    m.insert(new, v);
                }
                _ => {
                    header.as_object_mut().expect("an object").remove(&name);
                }
            }
            join_safetensors(&header, &data)
        }
        3 | 4 => {
            json(rng, &mut header);
            join_safetensors(&header, &data)
        }
        5 => {
            let mut out = join_safetensors(&header, &data);
            let n = u64::from_le_bytes(out[..8].try_into().expect("8 bytes"));
            let lie = *pick(
                rng,
                &[
                    0,
                    1,
                    n.wrapping_sub(1),
                    n + 1,
                    n + 8,
                    u32::MAX as u64,
                    1 << 62,
                    u64::MAX,
                ],
            );
            out[..8].copy_from_slice(&lie.to_le_bytes());
            out
        }
        6 if data.len() >= 4 => {
            // Special floats (and their i32 bit patterns) in the data.
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(data.len() / 4) * 4;
                let v: f32 = *pick(
                    rng,
                    &[f32::NAN, f32::INFINITY, -f32::INFINITY, f32::MAX, -1.0, 1e9],
                );
                data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            join_safetensors(&header, &data)
        }
        _ => bytes(rng, input, corpus, &[]),
    }
}

/// The members of a zip archive, in order (`None` if it does not open).
pub fn unzip(input: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(input)).ok()?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).ok()?;
        let mut buf = Vec::new();
        f.by_ref().take(MAX_LEN as u64).read_to_end(&mut buf).ok()?;
        let name = f.name().ok()?.to_string();
        out.push((name, buf));
    }
    Some(out)
}

/// A zip archive (stored, uncompressed) of `members` (a repeated name keeps
/// its first member only).
pub fn zip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut seen = std::collections::HashSet::new();
    for (name, data) in members.iter().filter(|(n, _)| seen.insert(n.clone())) {
        w.start_file(name.as_str(), opts).expect("in-memory zip");
        w.write_all(data).expect("in-memory zip");
    }
    w.finish().expect("in-memory zip").into_inner()
}

/// A mutation of a zip archive (a `.keras` file): one member mutated by its
/// kind (JSON semantically, the rest as bytes), a member dropped or
/// copied under another name, then re-packed; or the archive's own bytes (one time in four).
pub fn archive(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let Some(mut members) = unzip(input).filter(|m| !m.is_empty() && rng.below(4) != 0) else {
        return bytes(rng, input, corpus, &[]);
    };
    let i = rng.below(members.len());
    match rng.below(10) {
        0 => {
            members.remove(i);
        }
        1 => {
            // An extra member (zip names must stay unique).
            let (name, data) = members[i].clone();
            members.push((format!("{name}.extra"), data));
        }
        _ => {
            let (name, data) = &mut members[i];
            *data = if name.ends_with(".json") {
                json_text(rng, data, &[], &[])
            } else {
                bytes(rng, data, &[], &[])
            };
        }
    }
    let mut out = zip(&members);
    out.truncate(MAX_LEN);
    out
}

/// Tokens of `text` for dictionary insertion: maximal runs of word
/// characters, `%`, `@`, `"` and `.`, each at most 32 bytes, deduplicated.
pub fn tokens(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = text
        .split(|b| b.is_ascii_whitespace() || b",:()[]{}=".contains(b))
        .filter(|t| !t.is_empty() && t.len() <= 32)
        .map(|t| t.to_vec())
        .collect();
    out.extend(
        [":", ",", "=", "[", "]", "(", ")", "{", "}", "\n", " "]
            .iter()
            .map(|s| s.as_bytes().to_vec()),
    );
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_split_and_join_invert() {
        let header =
            serde_json::json!({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}});
        let file = join_safetensors(&header, &1.5f32.to_le_bytes());
        let (h, d) = split_safetensors(&file).unwrap();
        assert_eq!(h, header);
        assert_eq!(d, 1.5f32.to_le_bytes());
        assert_eq!(&file[..8], &(file.len() as u64 - 12).to_le_bytes());
    }

    #[test]
    fn zip_and_unzip_invert() {
        let m = vec![
            ("a.json".to_string(), b"{}".to_vec()),
            ("b".into(), vec![0, 1, 2]),
        ];
        assert_eq!(unzip(&zip(&m)).unwrap(), m);
    }

    #[test]
    fn mutators_stay_within_max_len_and_are_deterministic() {
        let seed = br#"{"a": [1, 2, {"b": "c"}], "d": 2.5}"#.to_vec();
        let corpus = vec![seed.clone()];
        let run = |s| {
            let mut rng = Rng::new(s);
            let mut x = seed.clone();
            for _ in 0..200 {
                x = json_text(&mut rng, &x, &corpus, &tokens(&seed));
                assert!(x.len() <= MAX_LEN);
            }
            x
        };
        assert_eq!(run(3), run(3));
    }
}
