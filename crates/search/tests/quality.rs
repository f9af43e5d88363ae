//! Search quality is a property of the ranking, not of the machine: on the development set
//! (`data/bfcl-live.json`, 1,053 queries over a pooled catalog of 457 tools) the lexical
//! search must put the gold tool in the top 5 for at least 90 % of the queries.

use std::sync::Arc;

use switchboard_search::eval::{DevSet, evaluate};
use switchboard_search::{DEFAULT_THRESHOLD, Document, Index, Tokenizer, ToolText, Weights};

fn devset() -> DevSet {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/bfcl-live.json");
    DevSet::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn lexical_recall_at_5_reaches_90_percent() {
    let set = devset();
    assert_eq!((set.tools.len(), set.queries.len()), (457, 1053));
    let tokenizer = Arc::new(Tokenizer::default());
    let documents: Vec<Document> = set
        .tools
        .iter()
        .map(|tool| Document::new(&ToolText::of_tool(tool, "", None), &tokenizer))
        .collect();
    let index = Index::build(&documents, tokenizer, Weights::default());
    let report = evaluate(&set, &index, DEFAULT_THRESHOLD);
    eprintln!("{report:#?}");
    assert!(report.quality.recall_at_5 >= 0.90, "{report:#?}");
    // The threshold costs relevant queries little and rejects some irrelevant ones.
    assert!(report.recall_at_5_thresholded >= 0.88, "{report:#?}");
    assert!(report.rejection > 0.0, "{report:#?}");
}
