//! [`Field`]: a value in a form every host language has, as the fields of an event or of an
//! error reach Python and Ruby.

/// One named value of an event (`Event::fields`) or an error (`Error::fields`).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Text.
    Str(String),
    /// A count, a port, a status or a server index.
    Int(u64),
    /// Seconds.
    Float(f64),
    /// A flag.
    Bool(bool),
}
