//! The best-shot quality (`retinaface::quality`, what `retinafacepublish` picks snapshots by) on
//! real photos: the faces the detector finds score lower blurred and smaller.

use std::path::Path;

use retinaface::events::snapshot::RgbImage;
use retinaface::quality::{FaceBox, LumaView, Quality, QualityConfig, assess};
use retinaface_testkit::wall::decode;
use retinaface_testkit::*;

fn quality_of(face: &FaceRecord, picture: &RgbImage, scale: f32) -> Quality {
    let luma = picture.luma();
    let view = LumaView {
        data: &luma,
        stride: picture.width,
        width: picture.width,
        height: picture.height,
    };
    let points = face
        .landmarks
        .iter()
        .map(|p| [p[0] as f32 * scale, p[1] as f32 * scale]);
    let mut landmarks = [[0f32; 2]; 5];
    for (l, p) in landmarks.iter_mut().zip(points) {
        *l = p;
    }
    let face = FaceBox {
        bbox: face.corners().map(|v| v as f32 * scale),
        landmarks: Some(landmarks),
        score: face.score.unwrap() as f32,
    };
    assess(&face, &view, &QualityConfig::default())
}

fn as_picture(image: image::RgbImage) -> RgbImage {
    RgbImage {
        width: image.width() as usize,
        height: image.height() as usize,
        data: image.into_raw(),
    }
}

#[test]
fn on_real_photos_a_face_scores_lower_blurred_and_smaller() {
    let mut compared = 0;
    for name in ["sample1.jpg", "test.jpg", "sample3.jpg"] {
        let faces = detect_image(name, "video/x-raw,format=RGB", "").faces();
        let rgb = decode(Path::new(&media(name)), None);
        let image =
            image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.data).unwrap();
        let sharp = as_picture(image.clone());
        let blurred = as_picture(image::imageops::blur(&image, 4.0));
        let (w, h) = (image.width() / 4, image.height() / 4);
        let small = as_picture(image::imageops::resize(
            &image,
            w,
            h,
            image::imageops::FilterType::Triangle,
        ));
        for face in faces[0].iter().filter(|f| f.height >= 40.0) {
            let q = quality_of(face, &sharp, 1.0);
            let b = quality_of(face, &blurred, 1.0);
            let s = quality_of(face, &small, 0.25);
            assert!(
                b.sharpness < q.sharpness && b.overall < q.overall,
                "{name}: {q:?} vs blurred {b:?}"
            );
            assert!(
                s.size < q.size && s.overall < q.overall,
                "{name}: {q:?} vs small {s:?}"
            );
            assert!(q.frontal > 0.0 && q.overall > 0.0, "{name}: {q:?}");
            compared += 1;
        }
    }
    assert!(compared >= 3, "{compared} faces compared");
}
