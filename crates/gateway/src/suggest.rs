//! Did-you-mean: the names closest to a misspelling, by edit distance (optimal string
//! alignment: insertions, deletions, substitutions and adjacent transpositions, compared
//! case-insensitively). Each comparison stops as soon as it exceeds the spelling's budget,
//! so offering thousands of candidates costs little, and a spelling longer than
//! [`MAX_SPELLING`] characters gets no suggestion at all.

/// Longest spelling (in characters) that gets suggestions.
pub const MAX_SPELLING: usize = 128;

/// Most suggestions returned.
pub const MAX_SUGGESTIONS: usize = 3;

/// Edits a spelling of `len` characters may be away from a suggestion: a third of it,
/// at least one, at most four.
fn budget(len: usize) -> usize {
    (len / 3).clamp(1, 4)
}

/// Collects the closest candidates to one spelling.
pub struct Suggester {
    spelling: Vec<char>,
    /// The spelling lowercased as bytes when it is ASCII (names nearly always are): such
    /// candidates are compared as bytes, without decoding.
    ascii: Option<Vec<u8>>,
    original: String,
    budget: usize,
    /// Best so far, by (distance, name), at most [`MAX_SUGGESTIONS`].
    best: Vec<(usize, String)>,
    /// Scratch rows of the distance table, reused across candidates.
    rows: [Vec<usize>; 3],
    candidate: Vec<char>,
    candidate_bytes: Vec<u8>,
}

impl Suggester {
    /// `None` when the spelling is empty or too long to suggest anything for.
    pub fn new(spelling: &str) -> Option<Suggester> {
        let mut chars = Vec::new();
        lowercase_into(&mut chars, spelling);
        if chars.is_empty() || chars.len() > MAX_SPELLING {
            return None;
        }
        Some(Suggester {
            budget: budget(chars.len()),
            spelling: chars,
            ascii: spelling
                .is_ascii()
                .then(|| spelling.bytes().map(|b| b.to_ascii_lowercase()).collect()),
            original: spelling.to_owned(),
            best: Vec::new(),
            rows: Default::default(),
            candidate: Vec::new(),
            candidate_bytes: Vec::new(),
        })
    }

    /// Offers `name`, compared as itself and as each of `forms` (e.g. the part of a
    /// namespaced name after its server prefix); the closest form counts.
    pub fn offer(&mut self, name: &str, forms: &[&str]) {
        if name == self.original {
            return;
        }
        // Once the list is full, only a candidate at most as far as its last can enter.
        let cap = match self.best.last() {
            Some((worst, _)) if self.best.len() == MAX_SUGGESTIONS => self.budget.min(*worst),
            _ => self.budget,
        };
        let mut closest: Option<usize> = None;
        for form in std::iter::once(name).chain(forms.iter().copied()) {
            let limit = closest.map_or(cap, |d| d.saturating_sub(1));
            if let Some(distance) = self.distance(form, limit) {
                closest = Some(closest.map_or(distance, |d| d.min(distance)));
            }
        }
        let Some(distance) = closest else {
            return;
        };
        let entry = (distance, name.to_owned());
        if self.best.iter().any(|(_, n)| n == name) {
            return;
        }
        let at = self.best.partition_point(|e| *e < entry);
        if at < MAX_SUGGESTIONS {
            self.best.insert(at, entry);
            self.best.truncate(MAX_SUGGESTIONS);
        }
    }

    /// The suggestions, closest first (ties by name).
    pub fn finish(self) -> Vec<String> {
        self.best.into_iter().map(|(_, name)| name).collect()
    }

    /// The distance from the spelling to `form`, if at most `limit`.
    fn distance(&mut self, form: &str, limit: usize) -> Option<usize> {
        if let Some(spelling) = &self.ascii
            && form.is_ascii()
        {
            if spelling.len().abs_diff(form.len()) > limit {
                return None;
            }
            self.candidate_bytes.clear();
            self.candidate_bytes
                .extend(form.bytes().map(|b| b.to_ascii_lowercase()));
            return bounded(spelling, &self.candidate_bytes, limit, &mut self.rows);
        }
        self.candidate.clear();
        lowercase_into(&mut self.candidate, form);
        if self.spelling.len().abs_diff(self.candidate.len()) > limit {
            return None;
        }
        bounded(&self.spelling, &self.candidate, limit, &mut self.rows)
    }
}

/// The distance of `a` and `b` if at most `limit`. A common prefix and suffix cost
/// nothing; namespaced names share long prefixes (`server__`), so stripping them leaves
/// little to compare.
fn bounded<T: PartialEq>(
    a: &[T],
    b: &[T],
    limit: usize,
    rows: &mut [Vec<usize>; 3],
) -> Option<usize> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suffix], &b[..b.len() - suffix]);
    if a.is_empty() || b.is_empty() {
        let distance = a.len().max(b.len());
        return (distance <= limit).then_some(distance);
    }
    osa(a, b, limit, rows)
}

/// `text` lowercased, char by char, into `into`.
fn lowercase_into(into: &mut Vec<char>, text: &str) {
    for c in text.chars() {
        if c.is_ascii() {
            into.push(c.to_ascii_lowercase());
        } else {
            into.extend(c.to_lowercase());
        }
    }
}

/// The optimal string alignment distance of `a` and `b` if at most `limit` (rows:
/// scratch space). Stops at the first row whose every cell exceeds `limit` (row minima
/// never decrease).
fn osa<T: PartialEq>(a: &[T], b: &[T], limit: usize, rows: &mut [Vec<usize>; 3]) -> Option<usize> {
    let width = b.len() + 1;
    let [before, previous, current] = rows;
    for row in [&mut *before, &mut *previous, &mut *current] {
        row.clear();
        row.resize(width, 0);
    }
    for (j, cell) in previous.iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut value = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                value = value.min(before[j - 2] + 1);
            }
            current[j] = value;
            row_min = row_min.min(value);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(before, previous);
        std::mem::swap(previous, current);
    }
    let distance = previous[b.len()];
    (distance <= limit).then_some(distance)
}

/// The closest of `candidates` to `spelling` (each compared as itself only).
pub fn closest<'a>(spelling: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let Some(mut suggester) = Suggester::new(spelling) else {
        return Vec::new();
    };
    for candidate in candidates {
        suggester.offer(candidate, &[]);
    }
    suggester.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: &str, b: &str) -> Option<usize> {
        Suggester::new(a).unwrap().distance(b, 10)
    }

    #[test]
    fn counts_edits_and_transpositions() {
        assert_eq!(distance("path", "path"), Some(0));
        assert_eq!(distance("pth", "path"), Some(1));
        assert_eq!(distance("ptah", "path"), Some(1));
        assert_eq!(distance("Path", "path"), Some(0));
        assert_eq!(distance("kitten", "sitting"), Some(3));
        assert!(Suggester::new("").is_none());
        assert_eq!(Suggester::new("abc").unwrap().distance("abcdef", 2), None);
    }

    #[test]
    fn compares_non_ascii_names_by_character() {
        assert_eq!(distance("größe", "GRÖSSE"), Some(2));
        assert_eq!(distance("größe", "größe"), Some(0));
        assert_eq!(distance("grose", "größe"), Some(2));
        assert_eq!(closest("Größe", ["größe", "grösse", "size"]), ["größe"]);
        assert_eq!(closest("grösze", ["größe", "grösse"]), ["grösse", "größe"]);
    }

    #[test]
    fn suggests_the_closest_within_budget() {
        let names = ["path", "paths", "content", "head", "tail"];
        assert_eq!(closest("pth", names), ["path"]);
        assert_eq!(closest("contnet", names), ["content"]);
        assert_eq!(closest("zzzzzz", names), Vec::<String>::new());
        assert_eq!(closest("path", names), ["paths"]);
        assert!(closest(&"x".repeat(MAX_SPELLING + 1), names).is_empty());
    }

    #[test]
    fn compares_alternative_forms() {
        let mut suggester = Suggester::new("echo").unwrap();
        suggester.offer("fixture__echo", &["echo"]);
        suggester.offer("fixture__add", &["add"]);
        suggester.offer("other__ech", &["ech"]);
        assert_eq!(suggester.finish(), ["fixture__echo", "other__ech"]);
    }

    #[test]
    fn stripping_common_ends_gives_the_full_tables_answer() {
        // Every pair of strings of up to 5 letters over {a, b, c}: the distance with the
        // common prefix and suffix stripped equals the full table's.
        let mut words = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            frontier = frontier
                .iter()
                .flat_map(|w| ['a', 'b', 'c'].map(|c| format!("{w}{c}")))
                .collect();
            words.extend(frontier.iter().cloned());
        }
        let chars = |w: &str| w.chars().collect::<Vec<char>>();
        let mut rows = Default::default();
        for a in words.iter().filter(|w| !w.is_empty()).step_by(3) {
            let mut suggester = Suggester::new(a).unwrap();
            for b in words.iter().step_by(2) {
                let full = if b.is_empty() {
                    Some(a.len())
                } else {
                    osa(&chars(a), &chars(b), 10, &mut rows)
                };
                assert_eq!(suggester.distance(b, 10), full, "{a} {b}");
            }
        }
    }

    #[test]
    fn keeps_at_most_three_in_order() {
        let found = closest("abcd", ["abcx", "abce", "abcf", "abxd", "abdc"]);
        assert_eq!(found, ["abce", "abcf", "abcx"]);
    }
}
