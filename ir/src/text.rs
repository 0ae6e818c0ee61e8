//! The text format: [`print`] and [`parse`].
//!
//! One node per line, ids renumbered `%0..%n` in topological order:
//!
//! ```text
//! graph train_step {
//!   %0 = input "x" : f32[8,4]
//!   %1 = param "dense_1/kernel" : f32[4,8]
//!   %2 = matmul %0, %1 : f32[8,8]  @dense_1 forward
//!   %3 = const 0.01 : f32[]  @dense_1 added_loss(kernel_regularizer)
//!   %4 = reduce_sum %2 axes=[0,1] : f32[]  @dense_1 forward
//!   return loss=%4
//! }
//! ```
//!
//! A node line is `%N = OP OPERANDS ATTRS : TYPE [@scope] [role]`. Leaves take
//! a quoted name (`input "x"`, `param "w"`) or a literal (`const 0.5`,
//! `const [1, 2, 3]`) instead of operands. The annotation is printed unless the
//! scope is empty and the role is the op's default ([`default_role`]); when
//! parsing, a missing role means the default. `;` starts a comment that runs to
//! the end of the line. f32 literals are printed with Rust's shortest
//! round-tripping notation (`1.0`, `1e-7`, `inf`, `-inf`, `NaN`, `-0.0`), so
//! `print(&parse(&print(g))?) == print(g)` for every verified graph `g` (NaN
//! payloads and signs are not kept: every NaN reads back as the canonical NaN).
// No `_ =>` over op kinds: the printer and the parser read the op table's
// attribute list ([`Op::attrs`]). Token matches (lexer, `Parser`) may end in
// `_ => expected(..)`, the syntax-error path; they are allowed where they are.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::error::{IrError, Result};
use crate::graph::{Graph, LossReason, Node, NodeId, Role};
use crate::op::{infer_type, Attr as OpAttr, AttrMut, Literal, Op};
use crate::types::{DType, Shape, TensorType};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// Quotes `s` unless it is a bare identifier (`[A-Za-z0-9_./-]+`).
pub fn quote_if_needed(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
    {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

/// The role a node of this op gets when the text gives none: `input` for
/// `input`, `param` for `param`, `forward` for everything else.
pub fn default_role(op: &Op) -> Role {
    match op {
        Op::Input { .. } => Role::Input,
        Op::Param { .. } => Role::Parameter,
        Op::Const(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::Cast
        | Op::Broadcast
        | Op::Reshape
        | Op::Transpose { .. }
        | Op::Reduce { .. }
        | Op::ArgMax { .. }
        | Op::MatMul { .. }
        | Op::Unfold { .. }
        | Op::Fold { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::OneHot { .. }
        | Op::StopGradient
        | Op::RandomUniform { .. }
        | Op::Gather
        | Op::ScatterAdd { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. }
        | Op::AllReduceMean => Role::Forward,
    }
}

// ---------------------------------------------------------------------------
// Printer
// ---------------------------------------------------------------------------

/// Prints `g` in the text format, numbering nodes `%0..%n` in
/// [`Graph::topo_order`]. A graph with a cycle is printed in index order (it
/// will not parse back, as it does not verify); an output naming a removed
/// node is printed as a comment.
pub fn print(g: &Graph) -> String {
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
    let num: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut s = String::new();
    let _ = writeln!(s, "graph {} {{", quote_if_needed(&g.name));
    for (i, &id) in order.iter().enumerate() {
        let node = g.node(id);
        let operands: Vec<String> = g
            .operands(id)
            .iter()
            .map(|o| match num.get(o) {
                Some(n) => format!("%{n}"),
                None => format!("%?{}", o.index()),
            })
            .collect();
        let _ = write!(s, "  %{i} = {}", op_text(&node.op, &operands.join(", ")));
        let _ = write!(s, " : {}", node.ty);
        if let Some(a) = annotation(node) {
            let _ = write!(s, "  {a}");
        }
        s.push('\n');
    }
    let mut outs = Vec::new();
    for (name, id) in g.outputs() {
        match num.get(id) {
            Some(n) => outs.push(format!("{}=%{n}", quote_if_needed(name))),
            None => {
                let _ = writeln!(
                    s,
                    "  ; output {} refers to removed node {}",
                    quote_if_needed(name),
                    id.index()
                );
            }
        }
    }
    if !outs.is_empty() {
        let _ = writeln!(s, "  return {}", outs.join(", "));
    }
    s.push_str("}\n");
    s
}

/// The `@scope role` annotation of a node, or `None` when both are default.
pub(crate) fn annotation(node: &Node) -> Option<String> {
    let default = node.role == default_role(&node.op);
    match (node.scope.is_empty(), default) {
        (true, true) => None,
        (true, false) => Some(node.role.to_string()),
        (false, _) => Some(format!("@{} {}", quote_if_needed(&node.scope), node.role)),
    }
}

/// The op with its operands (already formatted, comma-separated) and
/// attributes, as printed between `=` and `:`.
pub(crate) fn op_text(op: &Op, operands: &str) -> String {
    let name = op.name();
    let mut s = String::from(name);
    if !operands.is_empty() {
        s.push(' ');
        s.push_str(operands);
    }
    let list = |v: &[usize]| {
        let inner: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        format!("[{}]", inner.join(","))
    };
    for (key, attr) in op.attrs() {
        match attr {
            OpAttr::Name(n) => {
                let _ = write!(s, " {n:?}");
            }
            OpAttr::Literal(lit) => {
                s.push(' ');
                s.push_str(&literal_text(lit));
            }
            OpAttr::Usize(v) => {
                let _ = write!(s, " {key}={v}");
            }
            OpAttr::U32(v) => {
                let _ = write!(s, " {key}={v}");
            }
            OpAttr::Axes(v) => {
                let _ = write!(s, " {key}={}", list(v));
            }
            OpAttr::Flag(on) => {
                if *on {
                    let _ = write!(s, " {key}=true");
                }
            }
        }
    }
    s
}

/// A literal as printed: a bare value for a splat, `[a, b, …]` otherwise.
/// f32 values use Rust's `{:?}`, the shortest text that reads back bit-exactly.
pub(crate) fn literal_text(lit: &Literal) -> String {
    let items: Vec<String> = match lit {
        Literal::F32(v) => v.iter().map(|x| format!("{x:?}")).collect(),
        Literal::I32(v) => v.iter().map(|x| x.to_string()).collect(),
    };
    if items.len() == 1 {
        items.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", items.join(", "))
    }
}

impl fmt::Display for Graph {
    /// The text format (see [`print`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self))
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A run of `[A-Za-z0-9_./+-]`: identifiers, numbers, keywords.
    Word(String),
    /// A double-quoted string with Rust escapes, unescaped.
    Str(String),
    /// `%N`.
    Ref(usize),
    /// One of `= , : [ ] ( ) { } @`.
    Punct(char),
    Newline,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

fn perr(line: usize, col: usize, message: impl Into<String>) -> IrError {
    IrError::Parse {
        line,
        col,
        message: message.into(),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./+-".contains(c)
}

#[allow(clippy::wildcard_enum_match_arm)] // token matches, see the module note
fn lex(src: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        if c == '\n' {
            toks.push(Token {
                tok: Tok::Newline,
                line: tl,
                col: tc,
            });
            i += 1;
            line += 1;
            col = 1;
        } else if c.is_whitespace() {
            i += 1;
            col += 1;
        } else if c == ';' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
                col += 1;
            }
        } else if c == '"' {
            i += 1;
            col += 1;
            let mut s = String::new();
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(perr(tl, tc, "unterminated string"));
                };
                if d == '\n' {
                    return Err(perr(tl, tc, "unterminated string"));
                }
                if d == '"' {
                    i += 1;
                    col += 1;
                    break;
                }
                if d != '\\' {
                    s.push(d);
                    i += 1;
                    col += 1;
                    continue;
                }
                let (el, ec) = (line, col);
                let e = chars.get(i + 1).copied();
                i += 2;
                col += 2;
                match e {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some('0') => s.push('\0'),
                    Some('\\') => s.push('\\'),
                    Some('"') => s.push('"'),
                    Some('\'') => s.push('\''),
                    Some('u') => {
                        if chars.get(i) != Some(&'{') {
                            return Err(perr(el, ec, "expected '{' after \\u"));
                        }
                        let start = i + 1;
                        let mut j = start;
                        while j < chars.len() && chars[j] != '}' && chars[j] != '\n' {
                            j += 1;
                        }
                        if chars.get(j) != Some(&'}') {
                            return Err(perr(el, ec, "unterminated \\u{...} escape"));
                        }
                        let hex: String = chars[start..j].iter().collect();
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                perr(el, ec, format!("invalid unicode escape \\u{{{hex}}}"))
                            })?;
                        s.push(ch);
                        col += j + 1 - i;
                        i = j + 1;
                    }
                    Some(other) => {
                        return Err(perr(el, ec, format!("unknown escape '\\{other}'")));
                    }
                    None => return Err(perr(tl, tc, "unterminated string")),
                }
            }
            toks.push(Token {
                tok: Tok::Str(s),
                line: tl,
                col: tc,
            });
        } else if c == '%' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let digits: String = chars[start..j].iter().collect();
            if digits.is_empty() {
                return Err(perr(tl, tc, "expected a node number after '%'"));
            }
            let n = digits
                .parse::<usize>()
                .map_err(|_| perr(tl, tc, format!("node number %{digits} is too large")))?;
            toks.push(Token {
                tok: Tok::Ref(n),
                line: tl,
                col: tc,
            });
            col += j - i;
            i = j;
        } else if "=,:[](){}@".contains(c) {
            toks.push(Token {
                tok: Tok::Punct(c),
                line: tl,
                col: tc,
            });
            i += 1;
            col += 1;
        } else if is_word_char(c) {
            let start = i;
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
                col += 1;
            }
            toks.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                line: tl,
                col: tc,
            });
        } else {
            return Err(perr(tl, tc, format!("unexpected character {c:?}")));
        }
    }
    toks.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(toks)
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parses the text format into a verified graph whose node ids are `0..n` in
/// order of definition. Node numbers in the text may be any numbers, but each
/// must be defined (once) before it is used. Errors are [`IrError::Parse`]
/// with the 1-based line and column of the offending token; type errors and
/// verifier failures point at the op of the failing node's line.
pub fn parse(src: &str) -> Result<Graph> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        graph: Graph::new(""),
        ids: HashMap::new(),
        node_pos: Vec::new(),
        leaf_names: HashMap::new(),
    };
    p.file()?;
    let Parser {
        graph, node_pos, ..
    } = p;
    crate::verify::verify(&graph).map_err(|e| match e {
        IrError::Verify {
            node, op, message, ..
        } => {
            let (line, col, text_id) = node_pos.get(node).copied().unwrap_or((1, 1, node));
            perr(line, col, format!("%{text_id} ({op}): {message}"))
        }
        other @ (IrError::Parse { .. } | IrError::Type { .. } | IrError::Graph { .. }) => {
            perr(1, 1, other.to_string())
        }
    })?;
    Ok(graph)
}

/// A word with its line and column.
type Spanned = (String, usize, usize);

/// A parsed `key=value` attribute value.
enum AttrVal {
    Word(String, usize, usize),
    List(Vec<Spanned>, usize, usize),
}

struct Attr {
    key: String,
    line: usize,
    col: usize,
    val: AttrVal,
    used: bool,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    graph: Graph,
    /// Text node number → (graph id, line of definition).
    ids: HashMap<usize, (NodeId, usize)>,
    /// Per graph node index: (line, column of the op, text node number).
    node_pos: Vec<(usize, usize, usize)>,
    /// Input/param name → line of definition.
    leaf_names: HashMap<String, usize>,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Ref(n) => format!("'%{n}'"),
        Tok::Punct(c) => format!("'{c}'"),
        Tok::Newline => "end of line".into(),
        Tok::Eof => "end of input".into(),
    }
}

#[allow(clippy::wildcard_enum_match_arm)] // token matches, see the module note
impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err_here(&self, message: impl Into<String>) -> IrError {
        let t = self.peek();
        perr(t.line, t.col, message)
    }

    fn expected(&self, what: &str) -> IrError {
        let found = describe(&self.peek().tok);
        self.err_here(format!("expected {what}, found {found}"))
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, c: char, context: &str) -> Result<Token> {
        if self.is_punct(c) {
            Ok(self.bump())
        } else {
            Err(self.expected(&format!("'{c}' {context}")))
        }
    }

    fn skip_newlines(&mut self) {
        while self.peek().tok == Tok::Newline {
            self.bump();
        }
    }

    fn expect_eol(&mut self, context: &str) -> Result<()> {
        match self.peek().tok {
            Tok::Newline => {
                self.bump();
                Ok(())
            }
            _ => Err(self.expected(&format!("end of line {context}"))),
        }
    }

    /// A bare word or a quoted string.
    fn name(&mut self, what: &str) -> Result<String> {
        match &self.peek().tok {
            Tok::Word(w) | Tok::Str(w) => {
                let w = w.clone();
                self.bump();
                Ok(w)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn file(&mut self) -> Result<()> {
        self.skip_newlines();
        match &self.peek().tok {
            Tok::Word(w) if w == "graph" => {
                self.bump();
            }
            _ => return Err(self.expected("'graph'")),
        }
        self.graph.name = self.name("a graph name after 'graph'")?;
        self.expect_punct('{', "after the graph name")?;
        loop {
            self.skip_newlines();
            let t = self.peek().clone();
            match &t.tok {
                Tok::Ref(_) => self.node_line()?,
                Tok::Word(w) if w == "return" => {
                    self.bump();
                    self.return_line()?;
                    self.skip_newlines();
                    if let Tok::Ref(_) = self.peek().tok {
                        return Err(self.err_here("nodes must come before 'return'"));
                    }
                    self.expect_punct('}', "after the return line")?;
                    break;
                }
                Tok::Punct('}') => {
                    self.bump();
                    break;
                }
                _ => return Err(self.expected("a node '%N = ...', 'return' or '}'")),
            }
        }
        self.skip_newlines();
        if self.peek().tok != Tok::Eof {
            return Err(self.expected("end of input after '}'"));
        }
        Ok(())
    }

    fn return_line(&mut self) -> Result<()> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        if matches!(self.peek().tok, Tok::Newline | Tok::Punct('}')) {
            return self.end_of_return();
        }
        loop {
            let nt = self.peek().clone();
            let name = self.name("an output name")?;
            if let Some(l) = seen.get(&name) {
                return Err(perr(
                    nt.line,
                    nt.col,
                    format!(
                        "output {} is named twice (also on line {l})",
                        quote_if_needed(&name)
                    ),
                ));
            }
            seen.insert(name.clone(), nt.line);
            self.expect_punct('=', "after the output name")?;
            let id = self.operand_ref()?;
            self.graph.set_output(name, id);
            if !self.eat_punct(',') {
                break;
            }
        }
        self.end_of_return()
    }

    fn end_of_return(&mut self) -> Result<()> {
        if self.is_punct('}') {
            return Ok(());
        }
        self.expect_eol("after the return line")
    }

    /// `%N` naming an already defined node.
    fn operand_ref(&mut self) -> Result<NodeId> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Ref(n) => {
                self.bump();
                self.ids
                    .get(&n)
                    .map(|e| e.0)
                    .ok_or_else(|| perr(t.line, t.col, format!("%{n} used before definition")))
            }
            _ => Err(self.expected("an operand '%N'")),
        }
    }

    fn node_line(&mut self) -> Result<()> {
        let def = self.bump();
        let Tok::Ref(text_id) = def.tok else {
            return Err(perr(def.line, def.col, "expected '%N'"));
        };
        if let Some((_, l)) = self.ids.get(&text_id) {
            return Err(perr(
                def.line,
                def.col,
                format!("%{text_id} is defined twice (first on line {l})"),
            ));
        }
        self.expect_punct('=', &format!("after %{text_id}"))?;
        let op_tok = self.peek().clone();
        let op_name = match &op_tok.tok {
            Tok::Word(w) => w.clone(),
            _ => return Err(self.expected("an op name")),
        };
        self.bump();
        // Leaf payload or operands.
        let mut leaf_name: Option<(String, Token)> = None;
        let mut literal: Option<Vec<Spanned>> = None;
        let mut operands: Vec<NodeId> = Vec::new();
        // The payload after the op name is whatever the op's attribute list
        // starts with: a quoted name, a literal, or else operands.
        let payload = Op::prototype(&op_name).and_then(|mut p| {
            p.attrs_mut().first().and_then(|(_, a)| match a {
                AttrMut::Name(_) => Some(true),
                AttrMut::Literal(_) => Some(false),
                AttrMut::Usize(_) | AttrMut::U32(_) | AttrMut::Axes(_) | AttrMut::Flag(_) => None,
            })
        });
        match payload {
            Some(true) => {
                let t = self.peek().clone();
                match &t.tok {
                    Tok::Str(s) => {
                        leaf_name = Some((s.clone(), t.clone()));
                        self.bump();
                    }
                    _ => return Err(self.expected(&format!("a quoted name after '{op_name}'"))),
                }
            }
            Some(false) => literal = Some(self.literal()?),
            None => {
                if let Tok::Ref(_) = self.peek().tok {
                    operands.push(self.operand_ref()?);
                    while self.eat_punct(',') {
                        operands.push(self.operand_ref()?);
                    }
                }
            }
        }
        // Attributes.
        let mut attrs: Vec<Attr> = Vec::new();
        while let (Tok::Word(k), Tok::Punct('=')) = (&self.peek().tok, self.peek_at(1)) {
            let key = k.clone();
            let kt = self.bump();
            self.bump();
            if attrs.iter().any(|a| a.key == key) {
                return Err(perr(
                    kt.line,
                    kt.col,
                    format!("attribute '{key}' given twice"),
                ));
            }
            let vt = self.peek().clone();
            let val = if self.eat_punct('[') {
                let mut items = Vec::new();
                if !self.is_punct(']') {
                    loop {
                        let it = self.peek().clone();
                        match &it.tok {
                            Tok::Word(w) => {
                                items.push((w.clone(), it.line, it.col));
                                self.bump();
                            }
                            _ => return Err(self.expected("a list element")),
                        }
                        if !self.eat_punct(',') {
                            break;
                        }
                    }
                }
                self.expect_punct(']', "to close the list")?;
                AttrVal::List(items, vt.line, vt.col)
            } else if let Tok::Word(w) = &vt.tok {
                let w = w.clone();
                self.bump();
                AttrVal::Word(w, vt.line, vt.col)
            } else {
                return Err(self.expected(&format!("a value for attribute '{key}'")));
            };
            attrs.push(Attr {
                key,
                line: kt.line,
                col: kt.col,
                val,
                used: false,
            });
        }
        if !self.is_punct(':') {
            let what = if leaf_name.is_some() || literal.is_some() {
                "':' after the value"
            } else {
                "':' after operands"
            };
            let found = describe(&self.peek().tok);
            return Err(self.err_here(format!("expected {what}, found {found}")));
        }
        self.bump();
        let ty_tok = self.peek().clone();
        let ty = self.tensor_type()?;
        // Build the op.
        let op = build_op(
            &op_name,
            &op_tok,
            &mut attrs,
            leaf_name.as_ref(),
            literal,
            &ty,
        )?;
        if let Some(a) = attrs.iter().find(|a| !a.used) {
            return Err(perr(
                a.line,
                a.col,
                format!("unknown attribute '{}' for {}", a.key, op_name),
            ));
        }
        if let Some(n) = op.arity() {
            if operands.len() != n && !op.is_leaf() {
                return Err(perr(
                    op_tok.line,
                    op_tok.col,
                    format!(
                        "{op_name} takes {n} operand{}, got {}",
                        if n == 1 { "" } else { "s" },
                        operands.len()
                    ),
                ));
            }
        } else if operands.is_empty() {
            return Err(perr(
                op_tok.line,
                op_tok.col,
                format!("{op_name} takes at least one operand"),
            ));
        }
        if let Some((name, t)) = &leaf_name {
            if let Some(l) = self.leaf_names.get(name) {
                return Err(perr(
                    t.line,
                    t.col,
                    format!("leaf name {name:?} is already used on line {l}"),
                ));
            }
            self.leaf_names.insert(name.clone(), t.line);
        }
        let tys: Vec<&TensorType> = operands.iter().map(|&o| &self.graph.node(o).ty).collect();
        if let Err(m) = infer_type(&op, &tys, Some(&ty)) {
            let at = if m.contains("declares") {
                &ty_tok
            } else {
                &op_tok
            };
            return Err(perr(
                at.line,
                at.col,
                format!("%{text_id} ({op_name}): {m}"),
            ));
        }
        // Annotation.
        let mut scope = String::new();
        let mut role = default_role(&op);
        if self.eat_punct('@') {
            scope = self.name("a scope after '@'")?;
        }
        if let Tok::Word(_) = self.peek().tok {
            role = self.role()?;
        }
        match self.peek().tok {
            Tok::Newline => {
                self.bump();
            }
            Tok::Punct('}') => {}
            _ => return Err(self.expected("end of line after the node")),
        }
        let id = self.graph.add_node(
            Node {
                op,
                ty,
                role,
                scope,
            },
            &operands,
        );
        self.ids.insert(text_id, (id, def.line));
        debug_assert_eq!(id.index(), self.node_pos.len());
        self.node_pos.push((op_tok.line, op_tok.col, text_id));
        Ok(())
    }

    /// A const literal: one word, or a bracketed list of words (raw items).
    fn literal(&mut self) -> Result<Vec<Spanned>> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Word(w) => {
                self.bump();
                Ok(vec![(w.clone(), t.line, t.col)])
            }
            Tok::Punct('[') => {
                self.bump();
                let mut items = Vec::new();
                if !self.is_punct(']') {
                    loop {
                        let it = self.peek().clone();
                        match &it.tok {
                            Tok::Word(w) => {
                                items.push((w.clone(), it.line, it.col));
                                self.bump();
                            }
                            _ => return Err(self.expected("a number")),
                        }
                        if !self.eat_punct(',') {
                            break;
                        }
                    }
                }
                self.expect_punct(']', "to close the literal")?;
                Ok(items)
            }
            _ => Err(self.expected("a literal after 'const'")),
        }
    }

    fn tensor_type(&mut self) -> Result<TensorType> {
        let t = self.peek().clone();
        let dtype = match &t.tok {
            Tok::Word(w) => DType::from_name(w)
                .ok_or_else(|| perr(t.line, t.col, format!("unknown element type '{w}'")))?,
            _ => return Err(self.expected("a type like f32[2,3]")),
        };
        self.bump();
        self.expect_punct('[', "after the element type")?;
        let mut shape = Shape::new();
        if !self.is_punct(']') {
            loop {
                let it = self.peek().clone();
                match &it.tok {
                    Tok::Word(w) => {
                        let d = w
                            .parse::<usize>()
                            .map_err(|_| perr(it.line, it.col, format!("invalid extent '{w}'")))?;
                        shape.push(d);
                        self.bump();
                    }
                    _ => return Err(self.expected("an extent")),
                }
                if !self.eat_punct(',') {
                    break;
                }
            }
        }
        self.expect_punct(']', "to close the shape")?;
        Ok(TensorType { dtype, shape })
    }

    fn role(&mut self) -> Result<Role> {
        let t = self.bump();
        let Tok::Word(w) = &t.tok else {
            return Err(perr(t.line, t.col, "expected a role"));
        };
        let simple = match w.as_str() {
            "input" => Some(Role::Input),
            "param" => Some(Role::Parameter),
            "state" => Some(Role::OptimizerState),
            "forward" => Some(Role::Forward),
            "gradient" => Some(Role::Gradient),
            "update" => Some(Role::Update),
            "state_update" => Some(Role::StateUpdate),
            "loss" | "added_loss" | "metric" => None,
            _ => return Err(perr(t.line, t.col, format!("unknown role '{w}'"))),
        };
        if let Some(r) = simple {
            if self.is_punct('(') {
                return Err(self.err_here(format!("role '{w}' takes no arguments")));
            }
            return Ok(r);
        }
        self.expect_punct('(', &format!("after role '{w}'"))?;
        let role = match w.as_str() {
            "loss" => {
                let output = self.name("the loss output name")?;
                self.expect_punct(',', "between the loss output and its weight")?;
                let wt = self.peek().clone();
                let weight = match &wt.tok {
                    Tok::Word(x) => x
                        .parse::<f32>()
                        .map_err(|_| perr(wt.line, wt.col, format!("invalid loss weight '{x}'")))?,
                    _ => return Err(self.expected("a loss weight")),
                };
                self.bump();
                Role::CompiledLoss { output, weight }
            }
            "added_loss" => {
                let rt = self.peek().clone();
                let reason = match &rt.tok {
                    Tok::Word(x) => LossReason::from_name(x).ok_or_else(|| {
                        perr(rt.line, rt.col, format!("unknown added-loss reason '{x}'"))
                    })?,
                    _ => return Err(self.expected("an added-loss reason")),
                };
                self.bump();
                let mut call = 0;
                if self.eat_punct(',') {
                    let ct = self.peek().clone();
                    call = match &ct.tok {
                        Tok::Word(x) => x.parse::<u32>().map_err(|_| {
                            perr(ct.line, ct.col, format!("invalid call index '{x}'"))
                        })?,
                        _ => return Err(self.expected("a call index")),
                    };
                    self.bump();
                }
                Role::AddedLoss { reason, call }
            }
            _ => Role::Metric {
                name: self.name("a metric name")?,
            },
        };
        self.expect_punct(')', &format!("to close role '{w}'"))?;
        Ok(role)
    }
}

/// Turns an op name, its attributes and leaf payload into an [`Op`], marking
/// the attributes it consumed.
fn build_op(
    name: &str,
    tok: &Token,
    attrs: &mut [Attr],
    leaf_name: Option<&(String, Token)>,
    literal: Option<Vec<Spanned>>,
    ty: &TensorType,
) -> Result<Op> {
    let need = |attrs: &mut [Attr], key: &str| -> Result<usize> {
        let Some(a) = attrs.iter_mut().find(|a| a.key == key) else {
            return Err(perr(
                tok.line,
                tok.col,
                format!("{name} needs attribute '{key}'"),
            ));
        };
        a.used = true;
        match &a.val {
            AttrVal::Word(w, l, c) => w.parse::<usize>().map_err(|_| {
                perr(
                    *l,
                    *c,
                    format!("attribute '{key}' must be a non-negative integer, got '{w}'"),
                )
            }),
            AttrVal::List(_, l, c) => Err(perr(
                *l,
                *c,
                format!("attribute '{key}' must be a non-negative integer, got a list"),
            )),
        }
    };
    let need_list = |attrs: &mut [Attr], key: &str| -> Result<SmallVec<[usize; 4]>> {
        let Some(a) = attrs.iter_mut().find(|a| a.key == key) else {
            return Err(perr(
                tok.line,
                tok.col,
                format!("{name} needs attribute '{key}'"),
            ));
        };
        a.used = true;
        match &a.val {
            AttrVal::List(items, _, _) => items
                .iter()
                .map(|(w, l, c)| {
                    w.parse::<usize>()
                        .map_err(|_| perr(*l, *c, format!("invalid axis '{w}' in '{key}'")))
                })
                .collect(),
            AttrVal::Word(_, l, c) => Err(perr(
                *l,
                *c,
                format!("attribute '{key}' must be a list like [0,1]"),
            )),
        }
    };
    let flag = |attrs: &mut [Attr], key: &str| -> Result<bool> {
        let Some(a) = attrs.iter_mut().find(|a| a.key == key) else {
            return Ok(false);
        };
        a.used = true;
        match &a.val {
            AttrVal::Word(w, _, _) if w == "true" => Ok(true),
            AttrVal::Word(w, _, _) if w == "false" => Ok(false),
            AttrVal::Word(_, l, c) | AttrVal::List(_, l, c) => Err(perr(
                *l,
                *c,
                format!("attribute '{key}' must be true or false"),
            )),
        }
    };
    let mut op = Op::prototype(name)
        .ok_or_else(|| perr(tok.line, tok.col, format!("unknown op '{name}'")))?;
    let mut literal = literal;
    for (key, attr) in op.attrs_mut() {
        match attr {
            AttrMut::Name(n) => {
                *n = leaf_name.map(|l| l.0.clone()).ok_or_else(|| {
                    perr(tok.line, tok.col, format!("{name} needs a quoted name"))
                })?;
            }
            AttrMut::Literal(lit) => {
                let items = literal
                    .take()
                    .ok_or_else(|| perr(tok.line, tok.col, format!("{name} needs a literal")))?;
                *lit = match ty.dtype {
                    DType::F32 => Literal::F32(
                        items
                            .iter()
                            .map(|(w, l, c)| {
                                w.parse::<f32>()
                                    .map_err(|_| perr(*l, *c, format!("invalid f32 literal '{w}'")))
                            })
                            .collect::<Result<_>>()?,
                    ),
                    DType::I32 => Literal::I32(
                        items
                            .iter()
                            .map(|(w, l, c)| {
                                w.parse::<i32>()
                                    .map_err(|_| perr(*l, *c, format!("invalid i32 literal '{w}'")))
                            })
                            .collect::<Result<_>>()?,
                    ),
                };
            }
            AttrMut::Usize(v) => *v = need(attrs, key)?,
            AttrMut::U32(v) => {
                let x = need(attrs, key)?;
                *v = u32::try_from(x).map_err(|_| {
                    perr(
                        tok.line,
                        tok.col,
                        format!("{name} {key} {x} does not fit in u32"),
                    )
                })?;
            }
            AttrMut::Axes(v) => *v = need_list(attrs, key)?,
            AttrMut::Flag(on) => *on = flag(attrs, key)?,
        }
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Builder;
    use crate::nn;
    use crate::op::UnaryOp;

    fn f32t(shape: &[usize]) -> TensorType {
        TensorType::f32(shape)
    }

    #[test]
    fn prints_a_small_training_graph_exactly() {
        let b = Builder::new("train_step");
        let x = b.input("x", f32t(&[8, 4]));
        let w = b.param("dense_1/kernel", f32t(&[4, 8]));
        let h = b.with_scope("dense_1", || x.matmul(&w));
        let reg = b.with_scope("dense_1", || {
            b.with_role(
                Role::AddedLoss {
                    reason: LossReason::KernelRegularizer,
                    call: 0,
                },
                || nn::l2(&w, 0.01),
            )
        });
        b.output("pred/out", &h);
        b.output("added/0", &reg);
        let g = b.finish().unwrap();
        let expected = "\
graph train_step {
  %0 = input \"x\" : f32[8,4]
  %1 = param \"dense_1/kernel\" : f32[4,8]
  %2 = matmul %0, %1 : f32[8,8]  @dense_1 forward
  %3 = mul %1, %1 : f32[4,8]  @dense_1 added_loss(kernel_regularizer)
  %4 = reduce_sum %3 axes=[0,1] : f32[]  @dense_1 added_loss(kernel_regularizer)
  %5 = const 0.01 : f32[]  @dense_1 added_loss(kernel_regularizer)
  %6 = mul %4, %5 : f32[]  @dense_1 added_loss(kernel_regularizer)
  return pred/out=%2, added/0=%6
}
";
        assert_eq!(print(&g), expected);
        assert_eq!(g.to_string(), expected);
        assert_eq!(print(&parse(expected).unwrap()), expected);
    }

    #[test]
    fn printing_renumbers_in_topological_order() {
        let leaf = |name: &str| Node {
            op: Op::Input { name: name.into() },
            ty: f32t(&[2]),
            role: Role::Input,
            scope: String::new(),
        };
        let mut g = Graph::new("g");
        let a = g.add_node(leaf("a"), &[]);
        let n = g.add_node(
            Node {
                op: Op::Unary(UnaryOp::Neg),
                ty: f32t(&[2]),
                role: Role::Gradient,
                scope: String::new(),
            },
            &[a],
        );
        let bb = g.add_node(leaf("b"), &[]);
        g.set_operand(n, 0, bb);
        g.set_output("out", n);
        let expected = "\
graph g {
  %0 = input \"a\" : f32[2]
  %1 = input \"b\" : f32[2]
  %2 = neg %1 : f32[2]  gradient
}
";
        // No return line yet: outputs are printed only when present.
        g.remove_output("out");
        assert_eq!(print(&g), expected);
        g.set_output("out", n);
        let text = print(&g);
        assert!(text.ends_with("  %2 = neg %1 : f32[2]  gradient\n  return out=%2\n}\n"));
        let back = parse(&text).unwrap();
        assert_eq!(print(&back), text);
        // The parsed graph is compact: ids follow the printed numbering.
        assert_eq!(back.output("out").unwrap().index(), 2);
    }

    const HAND_WRITTEN: &str = r#"
; a file-test style header comment
graph "my graph" {   ; trailing comment
  %10 = input "x" : f32[2,3]
  %11=input "y\"q\\z":i32[2]      ; escapes in names
  %3 = param "w" : f32[3,2]  @"enc oder/d" param
  %4 = param "m" : f32[3,2]  @opt state
  %5   =   transpose %10   perm=[1, 0] : f32[3,2]  @enc/dense_1 forward
  %6 = matmul %10 , %3 trans_b=false : f32[2,2]
  %7 = matmul %5, %3 trans_a=true : f32[2,2] @enc loss(out_1, 0.5)
  %8 = const -0.0 : f32[]  added_loss(activity_regularizer, 1)
  %9 = const [NaN, inf, -inf, 1e-7, -2.5, 3] : f32[2,3] added_loss(add_loss)
  %20 = const [1, -2] : i32[2] @m metric("acc uracy")
  %21 = const 7 : i32[] gradient
  %22 = add %11, %20 : i32[2] update
  %23 = one_hot %11 depth=4 : f32[2,4]
  %24 = argmax %10 axis=1 : i32[2] @s added_loss(bias_regularizer)
  %25 = cast %24 : f32[2]
  %26 = slice %10 axis=1 start=1 end=3 : f32[2,2]
  %27 = concat %26, %6, %7 axis=1 : f32[2,6]
  %28 = reduce_max %10 axes=[0,1] : f32[]
  %29 = reduce_sum %10 axes=[] : f32[2,3]
  %30 = gt %10, %9 : f32[2,3]
  %31 = select %30, %10, %9 : f32[2,3]
  %32 = random_uniform %21 seed=4294967295 : f32[4,1]
  %33 = broadcast %25 : f32[3,2]
  %34 = reshape %33 : f32[6]
  %35 = stop_gradient %34 : f32[6] @x added_loss(kernel_regularizer)
  %36 = cast %10 : i32[2,3] @x
  return loss=%7, "odd name"=%35, metric/acc=%20, loss=%7
}
"#;

    #[test]
    fn rejects_duplicate_outputs_but_parses_everything_else() {
        let e = parse(HAND_WRITTEN).unwrap_err();
        assert_eq!(
            e,
            perr(
                30,
                51,
                "output loss is named twice (also on line 30)".to_string()
            )
        );
    }

    #[test]
    fn parses_hand_written_text() {
        let src = HAND_WRITTEN.replace(", loss=%7\n", "\n");
        let g = parse(&src).unwrap();
        assert_eq!(g.name, "my graph");
        assert_eq!(g.len(), 26);
        let n = |i: usize| g.node(NodeId::new(i));
        assert_eq!(
            n(1).op,
            Op::Input {
                name: "y\"q\\z".into()
            }
        );
        assert_eq!(n(1).ty, TensorType::i32([2]));
        assert_eq!(n(2).scope, "enc oder/d");
        assert_eq!(n(2).role, Role::Parameter);
        assert_eq!(n(3).role, Role::OptimizerState);
        assert_eq!(
            n(4).op,
            Op::Transpose {
                perm: SmallVec::from_slice(&[1, 0])
            }
        );
        assert_eq!(n(4).scope, "enc/dense_1");
        assert_eq!(
            n(5).op,
            Op::MatMul {
                trans_a: false,
                trans_b: false
            }
        );
        assert_eq!(n(5).role, Role::Forward);
        assert_eq!(n(5).scope, "");
        assert_eq!(
            n(6).role,
            Role::CompiledLoss {
                output: "out_1".into(),
                weight: 0.5
            }
        );
        let Op::Const(Literal::F32(v)) = &n(7).op else {
            panic!("{:?}", n(7).op)
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(
            n(7).role,
            Role::AddedLoss {
                reason: LossReason::ActivityRegularizer,
                call: 1
            }
        );
        let Op::Const(Literal::F32(v)) = &n(8).op else {
            panic!("{:?}", n(8).op)
        };
        assert!(v[0].is_nan());
        assert_eq!(
            &v[1..],
            &[f32::INFINITY, f32::NEG_INFINITY, 1e-7, -2.5, 3.0]
        );
        assert_eq!(n(9).op, Op::Const(Literal::I32(vec![1, -2])));
        assert_eq!(
            n(9).role,
            Role::Metric {
                name: "acc uracy".into()
            }
        );
        assert_eq!(n(10).op, Op::Const(Literal::I32(vec![7])));
        assert_eq!(n(10).role, Role::Gradient);
        assert_eq!(n(11).role, Role::Update);
        assert_eq!(n(12).ty, f32t(&[2, 4]));
        assert_eq!(
            n(15).op,
            Op::Slice {
                axis: 1,
                start: 1,
                end: 3
            }
        );
        assert_eq!(g.operands(NodeId::new(16)).len(), 3);
        assert_eq!(n(25).op, Op::Cast);
        assert_eq!(n(25).ty, TensorType::i32([2, 3]));
        assert_eq!(n(25).role, Role::Forward);
        assert_eq!(n(25).scope, "x");
        assert_eq!(n(21).op, Op::RandomUniform { seed: u32::MAX });
        assert_eq!(
            g.outputs()
                .iter()
                .map(|(k, v)| (k.as_str(), v.index()))
                .collect::<Vec<_>>(),
            vec![("loss", 6), ("odd name", 24), ("metric/acc", 9)]
        );
        // Canonical form: renumbered, single-spaced, default annotations dropped.
        let expected = r#"graph "my graph" {
  %0 = input "x" : f32[2,3]
  %1 = input "y\"q\\z" : i32[2]
  %2 = param "w" : f32[3,2]  @"enc oder/d" param
  %3 = param "m" : f32[3,2]  @opt state
  %4 = transpose %0 perm=[1,0] : f32[3,2]  @enc/dense_1 forward
  %5 = matmul %0, %2 : f32[2,2]
  %6 = matmul %4, %2 trans_a=true : f32[2,2]  @enc loss(out_1, 0.5)
  %7 = const -0.0 : f32[]  added_loss(activity_regularizer, 1)
  %8 = const [NaN, inf, -inf, 1e-7, -2.5, 3.0] : f32[2,3]  added_loss(add_loss)
  %9 = const [1, -2] : i32[2]  @m metric("acc uracy")
  %10 = const 7 : i32[]  gradient
  %11 = add %1, %9 : i32[2]  update
  %12 = one_hot %1 depth=4 : f32[2,4]
  %13 = argmax %0 axis=1 : i32[2]  @s added_loss(bias_regularizer)
  %14 = cast %13 : f32[2]
  %15 = slice %0 axis=1 start=1 end=3 : f32[2,2]
  %16 = concat %15, %5, %6 axis=1 : f32[2,6]
  %17 = reduce_max %0 axes=[0,1] : f32[]
  %18 = reduce_sum %0 axes=[] : f32[2,3]
  %19 = gt %0, %8 : f32[2,3]
  %20 = select %19, %0, %8 : f32[2,3]
  %21 = random_uniform %10 seed=4294967295 : f32[4,1]
  %22 = broadcast %14 : f32[3,2]
  %23 = reshape %22 : f32[6]
  %24 = stop_gradient %23 : f32[6]  @x added_loss(kernel_regularizer)
  %25 = cast %0 : i32[2,3]  @x forward
  return loss=%6, "odd name"=%24, metric/acc=%9
}
"#;
        assert_eq!(print(&g), expected);
        assert_eq!(print(&parse(expected).unwrap()), expected);
    }

    fn err(src: &str) -> (usize, usize, String) {
        match parse(src) {
            Err(IrError::Parse { line, col, message }) => (line, col, message),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn with_body(body: &str) -> String {
        format!("graph g {{\n  %0 = input \"x\" : f32[2,3]\n{body}\n}}\n")
    }

    #[test]
    fn parse_errors_point_at_the_offending_token() {
        let cases: Vec<(String, (usize, usize, &str))> = vec![
            (
                with_body("  %1 = mtmul %0, %0 : f32[2,2]"),
                (3, 8, "unknown op 'mtmul'"),
            ),
            (
                with_body("  %1 = neg %7 : f32[2,3]"),
                (3, 12, "%7 used before definition"),
            ),
            (
                with_body("  %1 = neg %0 : f32[2,3]  @d fwd"),
                (3, 30, "unknown role 'fwd'"),
            ),
            (
                with_body("  %1 = neg %0 f32[2,3]"),
                (3, 15, "expected ':' after operands, found 'f32'"),
            ),
            (
                with_body("  %0 = neg %0 : f32[2,3]"),
                (3, 3, "%0 is defined twice (first on line 2)"),
            ),
            (
                with_body("  %1 = neg %0 : f64[2,3]"),
                (3, 17, "unknown element type 'f64'"),
            ),
            (
                with_body("  %1 = param \"w\" : f32[3]\n  %2 = add %0, %1 : f32[2,3]"),
                (4, 8, "%2 (add): add operands differ: f32[2,3] vs f32[3]"),
            ),
            (
                with_body("  %1 = neg %0 : f32[3,2]"),
                (
                    3,
                    17,
                    "%1 (neg): neg yields f32[2,3] but the node declares f32[3,2]",
                ),
            ),
            (
                with_body("  %1 = transpose %0 : f32[3,2]"),
                (3, 8, "transpose needs attribute 'perm'"),
            ),
            (
                with_body("  %1 = neg %0 axis=1 : f32[2,3]"),
                (3, 15, "unknown attribute 'axis' for neg"),
            ),
            (
                with_body("  %1 = add %0 : f32[2,3]"),
                (3, 8, "add takes 2 operands, got 1"),
            ),
            (
                with_body("  %1 = input \"x : f32[2]"),
                (3, 14, "unterminated string"),
            ),
            (
                with_body("  %1 = const 1.5 : i32[]"),
                (3, 14, "invalid i32 literal '1.5'"),
            ),
            (
                with_body("  %1 = param \"x\" : f32[2]"),
                (3, 14, "leaf name \"x\" is already used on line 2"),
            ),
            (
                with_body("  %1 = const [1.0, 2.0] : f32[3]"),
                (
                    3,
                    8,
                    "%1 (const): const has 2 values; f32[3] needs 1 (a splat) or 3",
                ),
            ),
            (
                with_body("  %1 = argmax %0 axis=x : i32[2]"),
                (
                    3,
                    23,
                    "attribute 'axis' must be a non-negative integer, got 'x'",
                ),
            ),
            (
                with_body("  %1 = neg %0 : f32[2,3]  loss(out)"),
                (
                    3,
                    35,
                    "expected ',' between the loss output and its weight, found ')'",
                ),
            ),
            (
                with_body("  %1 = neg %0 : f32[2,3]  added_loss(l2)"),
                (3, 38, "unknown added-loss reason 'l2'"),
            ),
            (
                with_body("  %1 = neg %0 : f32[2,3] # oops"),
                (3, 26, "unexpected character '#'"),
            ),
            (
                "graph g {\n  %0 = input \"x\" : f32[2]\n".to_string(),
                (
                    3,
                    1,
                    "expected a node '%N = ...', 'return' or '}', found end of input",
                ),
            ),
            (
                with_body("  return y=%0\n  %1 = neg %0 : f32[2,3]"),
                (4, 3, "nodes must come before 'return'"),
            ),
            (
                "graf g {\n}\n".to_string(),
                (1, 1, "expected 'graph', found 'graf'"),
            ),
        ];
        for (src, (line, col, msg)) in cases {
            assert_eq!(err(&src), (line, col, msg.to_string()), "source:\n{src}");
        }
    }

    #[test]
    fn error_display_names_line_and_column() {
        let e = parse("graph g {\n  %0 = bogus : f32[]\n}\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2, column 8: unknown op 'bogus'");
    }

    #[test]
    fn state_update_role_round_trips() {
        let b = Builder::new("g");
        let m = b.param("bn/mean", f32t(&[2]));
        let new = b.with_role(Role::StateUpdate, || (&m * 0.5).stop_gradient());
        let out = crate::names::update("bn/mean");
        b.output(&out, &new);
        let g = b.finish().unwrap();
        let text = print(&g);
        assert!(text.contains("state_update"), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(
            back.node(back.output(&out).unwrap()).role,
            Role::StateUpdate
        );
        assert_eq!(print(&back), text);
    }

    #[test]
    fn empty_graph_and_unicode_names_round_trip() {
        let g = Graph::new("");
        let text = print(&g);
        assert_eq!(text, "graph \"\" {\n}\n");
        assert_eq!(print(&parse(&text).unwrap()), text);
        let b = Builder::new("g");
        let x = b.input("tab\there \u{7f} é \u{200b}", f32t(&[1]));
        b.output("ünï", &x);
        let g = b.finish().unwrap();
        let text = print(&g);
        let back = parse(&text).unwrap();
        assert_eq!(back.inputs()[0].0, "tab\there \u{7f} é \u{200b}");
        assert_eq!(print(&back), text);
    }

    #[test]
    fn f32_literals_round_trip_bit_exactly() {
        let vals = [
            0.0f32,
            -0.0,
            1.0,
            0.1,
            0.01,
            -2.5,
            1e-7,
            1e20,
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE / 3.0,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
            f32::INFINITY,
            f32::NEG_INFINITY,
            std::f32::consts::PI,
        ];
        let b = Builder::new("lits");
        let c = b.constant(Literal::F32(vals.to_vec()), f32t(&[vals.len()]));
        let n = b.constant(Literal::F32(vec![f32::NAN]), f32t(&[]));
        b.output("c", &c);
        b.output("n", &n);
        let g = b.finish().unwrap();
        let back = parse(&print(&g)).unwrap();
        let Op::Const(Literal::F32(v)) = &back.node(back.output("c").unwrap()).op else {
            panic!()
        };
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u32> = vals.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, want);
        let Op::Const(Literal::F32(v)) = &back.node(back.output("n").unwrap()).op else {
            panic!()
        };
        assert!(v[0].is_nan());
    }

    #[test]
    fn semicolons_in_strings_and_crlf_line_endings() {
        let src =
            "graph g {\r\n  %0 = input \"a;b\" : f32[] ; comment\r\n  return \"x;y\"=%0\r\n}\r\n";
        let g = parse(src).unwrap();
        assert_eq!(g.inputs()[0].0, "a;b");
        assert_eq!(g.outputs()[0].0, "x;y");
        assert_eq!(
            print(&g),
            "graph g {\n  %0 = input \"a;b\" : f32[]\n  return \"x;y\"=%0\n}\n"
        );
    }
}
