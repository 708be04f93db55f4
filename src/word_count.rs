//! WordCount: the classic streaming job, as in Flink's examples.

use brisk::prelude::*;
use std::path::PathBuf;

/// The text counted when no input is given: Hamlet's soliloquy (public domain), as Flink's
/// WordCount uses.
pub const DEFAULT_TEXT: &[&str] = &[
    "To be, or not to be,--that is the question:--",
    "Whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune",
    "Or to take arms against a sea of troubles,",
    "And by opposing end them?--To die,--to sleep,--",
    "No more; and by a sleep to say we end",
    "The heartache, and the thousand natural shocks",
    "That flesh is heir to,--'tis a consummation",
    "Devoutly to be wish'd. To die,--to sleep;--",
    "To sleep! perchance to dream:--ay, there's the rub;",
    "For in that sleep of death what dreams may come,",
    "When we have shuffled off this mortal coil,",
    "Must give us pause: there's the respect",
    "That makes calamity of so long life;",
    "For who would bear the whips and scorns of time,",
    "The oppressor's wrong, the proud man's contumely,",
    "The pangs of despis'd love, the law's delay,",
    "The insolence of office, and the spurns",
    "That patient merit of the unworthy takes,",
    "When he himself might his quietus make",
    "With a bare bodkin? who would these fardels bear,",
    "To grunt and sweat under a weary life,",
    "But that the dread of something after death,--",
    "The undiscover'd country, from whose bourn",
    "No traveller returns,--puzzles the will,",
    "And makes us rather bear those ills we have",
    "Than fly to others that we know not of?",
    "Thus conscience does make cowards of us all;",
    "And thus the native hue of resolution",
    "Is sicklied o'er with the pale cast of thought;",
    "And enterprises of great pith and moment,",
    "With this regard, their currents turn awry,",
    "And lose the name of action.--Soft you now!",
    "The fair Ophelia!--Nymph, in thy orisons",
    "Be all my sins remember'd.",
];

/// Calls `emit` for every word of `line`, as Flink's WordCount tokenizes: lower-cased, split
/// on non-word characters (anything but `[a-zA-Z0-9_]`), empty tokens dropped. Words are
/// `CompactString`s: stored inline, they need no heap allocation (see BENCHMARKS.md).
#[inline]
pub fn tokenize(line: &str, mut emit: impl FnMut(CompactString)) {
    let lower;
    let text = if line.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        lower = line.to_lowercase();
        lower.as_str()
    } else {
        line
    };
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !word.is_empty() {
            emit(CompactString::from(word));
        }
    }
}

/// Where WordCount writes its results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WordCountSink {
    /// `(word,count)` lines on stdout.
    Print,
    /// `word,count` lines in a file (or a directory of part files).
    File(PathBuf),
    /// `word,count` lines through the exactly-once file sink: a directory of part files,
    /// committed at checkpoints.
    ExactlyOnceFile(PathBuf),
    /// Nowhere (benchmarks).
    Discard,
}

/// Declares WordCount on `env`: lines from `inputs` (or the built-in text) → words →
/// `(word, count)` per key → `sink`.
pub fn word_count(env: &StreamExecutionEnvironment, inputs: &[PathBuf], sink: &WordCountSink) {
    word_count_throttled(env, inputs, sink, None);
}

/// [`word_count`] with the lines throttled to `source_rate` per second (`--source-rate`).
pub fn word_count_throttled(
    env: &StreamExecutionEnvironment,
    inputs: &[PathBuf],
    sink: &WordCountSink,
    source_rate: Option<f64>,
) {
    let text = if inputs.is_empty() {
        env.from_iter(DEFAULT_TEXT.iter().map(|l| l.to_string())).uid("built-in-text")
    } else {
        env.from_source(FileSource::for_paths(inputs.iter().cloned()), WatermarkStrategy::no_watermarks(), "file-input")
            .uid("file-input")
    };
    let text = match source_rate {
        Some(rate) => text.rich_map(crate::cli::Throttle::new(rate)).name("throttle").uid("throttle"),
        None => text,
    };
    let counts = text
        .flat_map(|line: String, out: &mut Collector<'_, (CompactString, i64)>| {
            tokenize(&line, |word| out.collect((word, 1)))
        })
        .name("tokenizer")
        .key_by_field(|(word, _): &(CompactString, i64)| word)
        .sum(|(_, count): &mut (CompactString, i64)| count)
        .name("counter")
        .uid("counter");
    match sink {
        WordCountSink::Print => {
            counts.print().name("print");
        }
        WordCountSink::File(path) => {
            counts.write_as_csv(path).name("file-sink");
        }
        WordCountSink::ExactlyOnceFile(path) => {
            counts.add_sink(FileSink::csv(path)).name("file-sink").uid("file-sink");
        }
        WordCountSink::Discard => {
            counts.add_sink(DiscardingSink).name("discard");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<CompactString> {
        let mut v = Vec::new();
        tokenize(line, |w| v.push(w));
        v
    }

    #[test]
    fn tokenizes_like_flink() {
        assert_eq!(
            words("To be, or not to be,--that is the question:--"),
            ["to", "be", "or", "not", "to", "be", "that", "is", "the", "question"]
        );
        assert_eq!(words("Devoutly to be wish'd."), ["devoutly", "to", "be", "wish", "d"]);
        assert_eq!(words("  snake_case and CAPS 42 "), ["snake_case", "and", "caps", "42"]);
        assert_eq!(words("Über café"), ["ber", "caf"], "non-ASCII letters are not word characters, as Java's \\W");
        assert!(words("--,;:").is_empty());
    }
}
