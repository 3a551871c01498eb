//! The people of a loaded library and matching an embedding against them.

use std::path::PathBuf;

use crate::embedding::Embedding;

/// Cosine similarity at and above which a face is named: measured on the sample media (README,
/// "Who is it"; `tests/identify_core.rs` prints the figures): with the default model the same
/// person scored ≥ 0.78 across two clips and ≥ 0.55 across frames of a clip where she looks
/// down, different people ≤ 0.42 (two faces of one group photo; ≤ 0.19 otherwise).
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// One person of the library and the embeddings of their photos.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub embeddings: Vec<Embedding>,
    /// The photos the embeddings came from, in the same order.
    pub photos: Vec<PathBuf>,
}

/// The best-matching person for an embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub name: String,
    pub similarity: f32,
}

impl Match {
    /// Whether the match names the face at `threshold` (below it the face is unknown).
    pub fn reaches(&self, threshold: f32) -> bool {
        self.similarity >= threshold
    }
}

#[derive(Debug, Clone, Default)]
pub struct Library {
    pub people: Vec<Person>,
}

impl Library {
    /// The person whose photo is most similar to `query`, whatever the similarity.
    pub fn nearest(&self, query: &Embedding) -> Option<Match> {
        self.people
            .iter()
            .flat_map(|p| p.embeddings.iter().map(move |e| (p, query.cosine(e))))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, similarity)| Match {
                name: p.name.clone(),
                similarity,
            })
    }

    /// The nearest person if the similarity reaches `threshold`; `None` = unknown.
    pub fn identify(&self, query: &Embedding, threshold: f32) -> Option<Match> {
        self.nearest(query).filter(|m| m.reaches(threshold))
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }
}
