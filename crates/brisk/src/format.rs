//! How records are written as text by `print` and the text/CSV file sinks, Flink's way:
//! tuples as `(a,b)`, CSV rows as `a,b`.

use std::fmt::Write;

/// A record that can be printed and written to text or CSV files.
pub trait TextFormat {
    /// Appends the record as text (what Flink's `toString` prints).
    fn write_text(&self, out: &mut String);

    /// Appends the record as one CSV row (RFC 4180 quoting where needed).
    fn write_csv(&self, out: &mut String) {
        let mut field = String::new();
        self.write_text(&mut field);
        write_csv_field(&field, out);
    }

    /// The text form as a new string.
    fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }
}

/// Appends `field`, quoted if it holds a comma, quote or line break.
pub fn write_csv_field(field: &str, out: &mut String) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

macro_rules! display_text {
    ($($t:ty),*) => {$(
        impl TextFormat for $t {
            fn write_text(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
display_text!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, bool, char);

macro_rules! float_text {
    ($($t:ty),*) => {$(
        impl TextFormat for $t {
            // Debug keeps the `.0` of whole numbers, as Java prints doubles.
            fn write_text(&self, out: &mut String) {
                let _ = write!(out, "{self:?}");
            }
        }
    )*};
}
float_text!(f32, f64);

impl TextFormat for String {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl TextFormat for compact_str::CompactString {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl TextFormat for str {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: TextFormat + ?Sized> TextFormat for &T {
    fn write_text(&self, out: &mut String) {
        (**self).write_text(out);
    }
    fn write_csv(&self, out: &mut String) {
        (**self).write_csv(out);
    }
}

impl TextFormat for () {
    fn write_text(&self, out: &mut String) {
        out.push_str("()");
    }
}

impl<T: TextFormat> TextFormat for Option<T> {
    fn write_text(&self, out: &mut String) {
        match self {
            Some(v) => v.write_text(out),
            None => out.push_str("null"),
        }
    }
    fn write_csv(&self, out: &mut String) {
        if let Some(v) = self {
            v.write_csv(out);
        }
    }
}

impl<T: TextFormat> TextFormat for Vec<T> {
    fn write_text(&self, out: &mut String) {
        out.push('[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            v.write_text(out);
        }
        out.push(']');
    }
}

macro_rules! tuple_text {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: TextFormat),+> TextFormat for ($($name,)+) {
            fn write_text(&self, out: &mut String) {
                out.push('(');
                $(
                    if $idx > 0 { out.push(','); }
                    self.$idx.write_text(out);
                )+
                out.push(')');
            }
            fn write_csv(&self, out: &mut String) {
                $(
                    if $idx > 0 { out.push(','); }
                    self.$idx.write_csv(out);
                )+
            }
        }
    };
}
tuple_text!(A 0);
tuple_text!(A 0, B 1);
tuple_text!(A 0, B 1, C 2);
tuple_text!(A 0, B 1, C 2, D 3);
tuple_text!(A 0, B 1, C 2, D 3, E 4);
tuple_text!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_text!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_text!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_print_like_flink() {
        assert_eq!(("hello".to_string(), 3i64).to_text(), "(hello,3)");
        assert_eq!((1.0f64, Some(2u8), None::<u8>).to_text(), "(1.0,2,null)");
        assert_eq!(vec![1, 2].to_text(), "[1, 2]");
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut s = String::new();
        ("a,b".to_string(), "say \"hi\"".to_string(), 5).write_csv(&mut s);
        assert_eq!(s, "\"a,b\",\"say \"\"hi\"\"\",5");
        let mut s = String::new();
        ("word".to_string(), 5i64).write_csv(&mut s);
        assert_eq!(s, "word,5");
    }
}
