//! The face record shared by the plugin's elements, its JSON lines and the trainer's `detect`.

use crate::decode::Face;

/// One face as elements exchange it (read back from a buffer's metadata, in that buffer's
/// pixels) and as JSON writes it: `retinafacejson` per frame and the trainer's `detect` per image
/// serialise this one type, so the schema has one writer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaceRecord {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// `None` when the producer gave no `detection` param.
    pub score: Option<f64>,
    /// Track ID (`object_id` param); `None` when no tracker ran.
    pub id: Option<u64>,
    /// Left eye, right eye, nose, left and right mouth corner; empty when absent.
    pub landmarks: Vec<[f64; 2]>,
    /// Frames since the frame this face's box was measured on: 0 when detected on this very
    /// frame; more when carried (`interval`), predicted by the tracker, or found by an `async`
    /// detector on an earlier frame. `None` when the producer does not say (or, in the
    /// trainer's `detect`, a still image).
    pub since_detection: Option<u64>,
    /// Who it is (`retinafaceidentify`): the name of the face library's person it matched.
    /// `None` when nobody matched or the face was not identified; [`Self::similarity`] tells
    /// which.
    pub name: Option<String>,
    /// Cosine similarity of the face's embedding to the nearest person of the face library
    /// (-1..1), whether or not it reached the threshold that names them: a similarity with no
    /// name is an unknown face. `None` when the face was not identified (no identify element,
    /// or the face was not embedded yet).
    pub similarity: Option<f64>,
}

impl FaceRecord {
    /// The box as corners `[x_min, y_min, x_max, y_max]`.
    pub fn corners(&self) -> [f64; 4] {
        [self.x, self.y, self.x + self.width, self.y + self.height]
    }

    /// The record as a core [`Face`] (what the tracker consumes). A missing score counts as
    /// certain (1.0): the producer asserted a face without saying how sure it was. Missing
    /// landmarks are put at the box centre, only to keep the face valid (a writer that knows
    /// the input had none leaves them out again).
    pub fn to_face(&self) -> Face {
        let (x, y, w, h) = (
            self.x as f32,
            self.y as f32,
            self.width as f32,
            self.height as f32,
        );
        let centre = [x + w / 2.0, y + h / 2.0];
        let mut landmarks = [centre; 5];
        if self.landmarks.len() == 5 {
            for (l, p) in landmarks.iter_mut().zip(&self.landmarks) {
                *l = [p[0] as f32, p[1] as f32];
            }
        }
        Face {
            bbox: [x, y, x + w, y + h],
            score: self.score.unwrap_or(1.0) as f32,
            landmarks,
        }
    }

    /// The record of a detected `face` (score and landmarks as detected) with track `id`,
    /// measured on this very frame when `since_detection` is 0.
    pub fn from_face(face: &Face, id: Option<u64>) -> Self {
        Self::from_face_since(face, id, None)
    }

    /// [`Self::from_face`] with the frames since the face was measured.
    pub fn from_face_since(face: &Face, id: Option<u64>, since_detection: Option<u64>) -> Self {
        Self {
            x: face.bbox[0] as f64,
            y: face.bbox[1] as f64,
            width: face.width() as f64,
            height: face.height() as f64,
            score: Some(face.score as f64),
            id,
            landmarks: face
                .landmarks
                .iter()
                .map(|p| [p[0] as f64, p[1] as f64])
                .collect(),
            since_detection,
            name: None,
            similarity: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_schema_of_one_face() {
        let face = Face {
            bbox: [10.0, 20.0, 50.0, 70.0],
            score: 0.5,
            landmarks: [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]],
        };
        let record = FaceRecord::from_face(&face, Some(7));
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"x":10.0,"y":20.0,"width":40.0,"height":50.0,"score":0.5,"id":7,"landmarks":[[1.0,2.0],[3.0,4.0],[5.0,6.0],[7.0,8.0],[9.0,10.0]],"since_detection":null,"name":null,"similarity":null}"#
        );
        assert_eq!(record.to_face(), face);
        let carried = FaceRecord::from_face_since(&face, Some(7), Some(3));
        assert!(
            serde_json::to_string(&carried)
                .unwrap()
                .contains(r#""since_detection":3,"#)
        );
        let anonymous = FaceRecord::from_face(&face, None);
        assert!(
            serde_json::to_string(&anonymous)
                .unwrap()
                .contains(r#""id":null"#)
        );
    }
}
