//! "did you mean `concurrency`?": the nearest valid name to a misspelt one.
//!
//! serde reports an unknown key (or enum value) as
//! ``unknown field `concurency`, expected one of `timeout`, `concurrency` ``;
//! [`did_you_mean`] reads the names out of that message, so every table with
//! `deny_unknown_fields` gets a suggestion without keeping a second list of
//! its keys.

/// The number of single-character insertions, deletions and substitutions
/// that turn `a` into `b` (Levenshtein distance), ignoring ASCII case.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // One row of the table at a time: `previous[j]` is the distance between
    // the first i-1 characters of `a` and the first j of `b`.
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            let deletion = previous[j + 1] + 1;
            let insertion = current[j] + 1;
            current[j + 1] = substitution.min(deletion).min(insertion);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The candidate closest to `typed`, if it is close enough to be what was
/// meant: at most one edit in three characters (and at least one edit
/// allowed), the first one on a tie.
pub fn nearest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = edit_distance(typed, candidate);
        let longest = typed.chars().count().max(candidate.chars().count());
        let allowed = (longest / 3).max(1);
        if distance <= allowed && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// serde's ``unknown field `x`, expected one of `a`, `b` `` (or ``unknown
/// variant``) with the nearest expected name suggested:
/// ``unknown field `x`; did you mean `a`? (expected one of `a`, `b`)``.
/// Any other message comes back as it was.
pub fn did_you_mean(message: &str) -> String {
    let Some((head, expected)) = message.split_once(", expected ") else {
        return message.to_string();
    };
    let typed = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|prefix| head.strip_prefix(prefix))
        .and_then(|rest| rest.strip_suffix('`'));
    let Some(typed) = typed else {
        return message.to_string();
    };
    // `a`, `b` or `c`: every other backquoted piece is a name.
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match nearest(typed, names.iter().copied()) {
        Some(name) if name != typed => {
            format!("{head}; did you mean `{name}`? (expected {expected})")
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("concurency", "concurrency"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        assert_eq!(edit_distance("Timeout", "timeout"), 0);
        assert_eq!(edit_distance("dépends", "depends"), 1);
    }

    #[test]
    fn suggests_only_a_name_close_enough_to_be_meant() {
        let keys = ["timeout", "concurrency", "memory", "priority", "state_dir"];
        assert_eq!(nearest("concurency", keys), Some("concurrency"));
        assert_eq!(nearest("timout", keys), Some("timeout"));
        assert_eq!(nearest("memroy", keys), Some("memory"));
        assert_eq!(nearest("retries", keys), None);
        assert_eq!(nearest("x", keys), None);
        assert_eq!(nearest("id", ["ab"]), None);
        assert_eq!(nearest("ids", ["id", "ip"]), Some("id"));
    }

    #[test]
    fn adds_the_suggestion_to_serdes_unknown_field_message() {
        assert_eq!(
            did_you_mean(
                "unknown field `concurency`, expected one of `timeout`, `concurrency`, `memory`"
            ),
            "unknown field `concurency`; did you mean `concurrency`? \
             (expected one of `timeout`, `concurrency`, `memory`)"
        );
        assert_eq!(
            did_you_mean("unknown field `nam`, expected `name`"),
            "unknown field `nam`; did you mean `name`? (expected `name`)"
        );
        assert_eq!(
            did_you_mean("unknown variant `fff`, expected one of `none`, `ff`, `merge`"),
            "unknown variant `fff`; did you mean `ff`? (expected one of `none`, `ff`, `merge`)"
        );
        let far = "unknown field `retries`, expected one of `id`, `name`, `type`";
        assert_eq!(did_you_mean(far), far);
        assert_eq!(
            did_you_mean("invalid type: integer"),
            "invalid type: integer"
        );
    }
}
