//! Finds the top-level `"id"` of a JSON-RPC message in bytes that may not parse: a line too
//! long to buffer (fed chunk by chunk while it is discarded) or a line that is not valid
//! JSON. The id may be anywhere in the object (TypeScript servers write it last, after the
//! result). Constant memory: a few small counters and a bounded token buffer.

use serde_json::Value;

/// Longest id token captured (quotes and escapes included); longer ids are not reported.
const TOKEN_MAX: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// At the top level, the next string is a key.
    Key,
    /// A key was read; a `:` comes next.
    Colon,
    /// The value of the key just read comes next.
    Value,
    /// Inside a value that is not the id.
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    Key,
    IdString,
    IdNumber,
}

/// A streaming scanner over one message.
pub struct IdScanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    expect: Expect,
    key_is_id: bool,
    capture: Capture,
    token: Vec<u8>,
    overflow: bool,
    found: Option<Value>,
}

impl Default for IdScanner {
    fn default() -> Self {
        IdScanner {
            depth: 0,
            in_string: false,
            escaped: false,
            expect: Expect::Other,
            key_is_id: false,
            capture: Capture::None,
            token: Vec::with_capacity(16),
            overflow: false,
            found: None,
        }
    }
}

impl IdScanner {
    /// The id of a complete message, if one can be found.
    pub fn scan(bytes: &[u8]) -> Option<Value> {
        let mut scanner = IdScanner::default();
        scanner.feed(bytes);
        scanner.finish()
    }

    /// The id, as soon as it has been read.
    pub fn found(&self) -> Option<&Value> {
        self.found.as_ref()
    }

    /// Ends the message: a number still being read counts.
    pub fn finish(mut self) -> Option<Value> {
        if self.capture == Capture::IdNumber {
            self.end_number();
        }
        self.found
    }

    /// Feeds the next bytes of the message.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.found.is_some() {
                return;
            }
            self.step(byte);
        }
    }

    fn push(&mut self, byte: u8) {
        if self.token.len() < TOKEN_MAX {
            self.token.push(byte);
        } else {
            self.overflow = true;
        }
    }

    fn start(&mut self, capture: Capture, byte: u8) {
        self.capture = capture;
        self.token.clear();
        self.overflow = false;
        self.push(byte);
    }

    fn step(&mut self, byte: u8) {
        if self.in_string {
            if self.capture != Capture::None {
                self.push(byte);
            }
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
                self.end_string();
            }
            return;
        }
        if self.capture == Capture::IdNumber {
            if byte.is_ascii_digit() || matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.push(byte);
                return;
            }
            self.end_number();
        }
        let top = self.depth == 1;
        match byte {
            b'"' => {
                self.in_string = true;
                match (top, self.expect) {
                    (true, Expect::Key) => self.start(Capture::Key, byte),
                    (true, Expect::Value) if self.key_is_id => self.start(Capture::IdString, byte),
                    (true, Expect::Value) => self.expect = Expect::Other,
                    _ => {}
                }
            }
            b'{' | b'[' => {
                if top && self.expect == Expect::Value {
                    self.expect = Expect::Other;
                }
                self.depth = self.depth.saturating_add(1);
                if self.depth == 1 {
                    self.expect = if byte == b'{' {
                        Expect::Key
                    } else {
                        Expect::Other
                    };
                }
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            b':' if top && self.expect == Expect::Colon => self.expect = Expect::Value,
            b',' if top => {
                self.expect = Expect::Key;
                self.key_is_id = false;
            }
            b'-' | b'0'..=b'9' if top && self.expect == Expect::Value && self.key_is_id => {
                self.start(Capture::IdNumber, byte)
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if top && self.expect == Expect::Value => self.expect = Expect::Other,
            _ => {}
        }
    }

    fn end_string(&mut self) {
        let capture = std::mem::replace(&mut self.capture, Capture::None);
        match capture {
            Capture::Key => {
                self.key_is_id = !self.overflow && self.token == b"\"id\"";
                self.expect = Expect::Colon;
            }
            Capture::IdString => {
                if !self.overflow {
                    self.found = serde_json::from_slice::<String>(&self.token)
                        .ok()
                        .map(Value::String);
                }
                self.expect = Expect::Other;
            }
            Capture::None | Capture::IdNumber => {}
        }
    }

    fn end_number(&mut self) {
        self.capture = Capture::None;
        if !self.overflow {
            self.found = serde_json::from_slice::<serde_json::Number>(&self.token)
                .ok()
                .map(Value::Number);
        }
        self.expect = Expect::Other;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_the_top_level_id_wherever_it_is() {
        let cases: [(&[u8], Option<Value>); 9] = [
            (br#"{"jsonrpc":"2.0","id":42,"result":{}}"#, Some(json!(42))),
            (
                br#"{"result":{"id":1,"x":[{"id":2}]},"jsonrpc":"2.0","id":7}"#,
                Some(json!(7)),
            ),
            (br#"{ "id" : "a\"b" , "x":1}"#, Some(json!("a\"b"))),
            (br#"{"x":"\"id\":3","id":-4}"#, Some(json!(-4))),
            (br#"{"jsonrpc":"2.0","result":{"id":5}}"#, None),
            (br#"{"id":null,"error":{}}"#, None),
            (br#"{"id":12"#, Some(json!(12))),
            (br#"{"result":[1,2,{"a":"}"}],"id":9,"#, Some(json!(9))),
            (b"not json at all", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                IdScanner::scan(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn works_across_chunks() {
        let message = br#"{"result":{"text":"xxxxxxxxxxxxxxxxxxxx"},"jsonrpc":"2.0","id":123456}"#;
        for size in 1..message.len() {
            let mut scanner = IdScanner::default();
            for chunk in message.chunks(size) {
                scanner.feed(chunk);
            }
            assert_eq!(scanner.finish(), Some(json!(123456)), "chunk size {size}");
        }
    }
}
