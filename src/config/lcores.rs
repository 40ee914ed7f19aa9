//! The EAL lcore list (`-l`): "0-3", "0,2,4", "1-2,5".

/// DPDK's `RTE_MAX_LCORE` in the Debian bookworm build (`rte_build_config.h`).
pub(super) const MAX_LCORE: u32 = 128;

/// Parses an lcore list into the lcore ids in the order they are listed.
///
/// Stricter than DPDK's own parser on purpose: no blanks, no reversed ranges,
/// no lcore listed twice, and no `(a,b)@c` groups (those need `--lcores`,
/// and a worker must own a whole lcore here). The error is the problem text,
/// without the key name.
pub(super) fn parse(text: &str) -> Result<Vec<u32>, String> {
    if text.is_empty() {
        return Err("empty".to_string());
    }
    if text.contains(['(', ')', '@']) {
        return Err(format!(
            "{text:?} uses the lcore group syntax \"(a,b)@c\", which is not supported here; \
             list lcore ids such as \"0-3\" or \"0,2,4\""
        ));
    }
    let malformed = || format!("{text:?} is not an lcore list such as \"0-3\", \"0,2,4\" or \"1-2,5\"");
    let mut lcores: Vec<u32> = Vec::new();
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (a, b),
            None => (item, item),
        };
        let first = lcore_id(first).ok_or_else(malformed)??;
        let last = lcore_id(last).ok_or_else(malformed)??;
        if first > last {
            return Err(format!("{text:?}: the range {item:?} runs backwards"));
        }
        for lcore in first..=last {
            if lcores.contains(&lcore) {
                return Err(format!("{text:?}: lcore {lcore} is listed twice"));
            }
            lcores.push(lcore);
        }
    }
    Ok(lcores)
}

/// `None`: not a decimal number. `Some(Err)`: a number out of range.
fn lcore_id(digits: &str) -> Option<Result<u32, String>> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let out_of_range =
        || format!("lcore {digits} is out of range 0..={} (RTE_MAX_LCORE is {MAX_LCORE})", MAX_LCORE - 1);
    Some(match digits.parse::<u32>() {
        Ok(id) if id < MAX_LCORE => Ok(id),
        _ => Err(out_of_range()),
    })
}

/// The main lcore: the lowest listed, which is also DPDK's default choice.
pub(super) fn main_lcore(lcores: &[u32]) -> Option<u32> {
    lcores.iter().copied().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse("0,2,4"), Ok(vec![0, 2, 4]));
        assert_eq!(parse("1-2,5"), Ok(vec![1, 2, 5]));
        assert_eq!(parse("5,1"), Ok(vec![5, 1]));
        assert_eq!(main_lcore(&[5, 1]), Some(1));
        assert_eq!(parse("127"), Ok(vec![127]));
    }

    #[test]
    fn malformed() {
        let list = "is not an lcore list such as \"0-3\", \"0,2,4\" or \"1-2,5\"";
        for bad in ["0-", "-1", "a", "0,,1", "0 - 1", " 0", "0-1-2", "+1", "0,"] {
            assert_eq!(parse(bad), Err(format!("{bad:?} {list}")), "{bad}");
        }
        assert_eq!(parse(""), Err("empty".into()));
        assert_eq!(parse("3-1"), Err("\"3-1\": the range \"3-1\" runs backwards".into()));
        assert_eq!(parse("0-2,1"), Err("\"0-2,1\": lcore 1 is listed twice".into()));
        assert_eq!(parse("128"), Err("lcore 128 is out of range 0..=127 (RTE_MAX_LCORE is 128)".into()));
        assert_eq!(
            parse("0,99999999999999999999"),
            Err("lcore 99999999999999999999 is out of range 0..=127 (RTE_MAX_LCORE is 128)".into())
        );
        assert!(parse("(0,1)@2").unwrap_err().contains("group syntax"));
    }
}
