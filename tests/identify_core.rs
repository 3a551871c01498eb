//! Face embeddings and the face library on the sample media, with the real detector and the
//! default embedding model (`fr_feature.onnx`, installed by scripts/setup.sh):
//! - the man of `single_face.mp4` and `face_noface.mov` (two clips of one person) is similar to
//!   himself across clips and not to the woman of `WolfgangLanger_Pexels.mp4`, nor to the people
//!   of the group photos, who are not similar to each other either;
//! - a library made from frames of one clip names the person in the other clip, leaves strangers
//!   unknown, skips photos without one clear face naming them, and its cache (mode 0600) makes
//!   the second load compute nothing.
//!
//! The similarity figures are printed (`--nocapture`): README "Who is it" quotes them.

use std::fs;
use std::path::Path;

use retinaface::embedding::{Embedder, Embedding};
use retinaface::engine::{ClientOptions, EngineKey, Registry};
use retinaface::library::{CACHE_FILE, CROP_SIDE, Library, SkipReason, aligned_rgb, write_unknown};
use retinaface::{DetectParams, Detector, Face, SessionConfig};
use retinaface_testkit::clips::{frames, save_png};
use retinaface_testkit::wall::{Rgb, decode};
use retinaface_testkit::{media, model};

/// The threshold the identify element uses for "unknown" (README explains the measurement).
const THRESHOLD: f32 = retinaface::library::DEFAULT_THRESHOLD;

fn detector() -> Detector {
    Detector::load(
        Path::new(&model("retinaface-mv025.onnx")),
        &SessionConfig::default(),
        &[],
    )
    .expect("detector loads")
}

fn embedder() -> Embedder {
    embedder_in(&Registry::new())
}

/// A client of the default embedding model in `registry`.
fn embedder_in(registry: &Registry) -> Embedder {
    let key = EngineKey::new(
        Path::new(&model("fr_feature.onnx")),
        &SessionConfig::default(),
    );
    Embedder::connect(registry, key, &[], ClientOptions::default()).expect("embedding model loads")
}

/// `img` as a frame of its `planes` (from `img.frame()`).
fn frame_of<'a>(img: &Rgb, planes: &'a [retinaface::Plane<'a>]) -> retinaface::Frame<'a> {
    let (layout, _) = img.frame();
    retinaface::Frame {
        layout,
        width: img.width,
        height: img.height,
        planes,
        matrix: retinaface::YuvMatrix::BT601,
    }
}

fn largest(faces: &[Face]) -> Option<Face> {
    faces
        .iter()
        .copied()
        .max_by(|a, b| a.width().total_cmp(&b.width()))
}

/// The embedding of the largest face of each image that has one.
fn embed_largest(images: &[Rgb], det: &mut Detector, emb: &Embedder) -> Vec<Embedding> {
    images
        .iter()
        .filter_map(|img| {
            let face = largest(&img.detect(det, &DetectParams::default()))?;
            let (_, planes) = img.frame();
            let frame = frame_of(img, &planes);
            Some(emb.embed(&frame, &[face.landmarks]).unwrap().remove(0))
        })
        .collect()
}

/// Every face of a photo big enough to be recognised (≥ 40 px wide), embedded.
fn embed_all(img: &Rgb, det: &mut Detector, emb: &Embedder) -> Vec<Embedding> {
    let faces: Vec<[[f32; 2]; 5]> = img
        .detect(det, &DetectParams::default())
        .iter()
        .filter(|f| f.width() >= 40.0)
        .map(|f| f.landmarks)
        .collect();
    let (_, planes) = img.frame();
    let frame = frame_of(img, &planes);
    emb.embed(&frame, &faces).unwrap()
}

fn pairs(a: &[Embedding], b: &[Embedding]) -> Vec<f32> {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| x.cosine(y)))
        .collect()
}

fn summary(what: &str, v: &[f32]) -> (f32, f32) {
    let min = v.iter().copied().fold(f32::INFINITY, f32::min);
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    println!(
        "{what}: {} pairs, min {min:.3}, mean {mean:.3}, max {max:.3}",
        v.len()
    );
    (min, max)
}

#[test]
fn one_person_across_clips_is_similar_and_different_people_are_not() {
    let (mut det, emb) = (detector(), embedder());
    let man_a = embed_largest(&frames("single_face.mp4", 2, 0.0, 10.0, 8), &mut det, &emb);
    // face_noface.mov shows the face until ≈ 2.4 s.
    let man_b = embed_largest(&frames("face_noface.mov", 4, 0.0, 2.2, 8), &mut det, &emb);
    let woman = embed_largest(
        &frames("WolfgangLanger_Pexels.mp4", 2, 0.0, 30.0, 8),
        &mut det,
        &emb,
    );
    assert!(man_a.len() >= 4 && man_b.len() >= 4 && woman.len() >= 4);
    let (same_min, _) = summary("genuine, man across clips", &pairs(&man_a, &man_b));
    let within: Vec<f32> = pairs(&woman, &woman)
        .into_iter()
        .filter(|c| *c < 0.9999)
        .collect();
    let (woman_min, _) = summary("genuine, woman across frames", &within);
    let (_, cross_max) = summary("impostor, man vs woman", &pairs(&man_a, &woman));
    // Different people in one group photo: every pair of faces of a photo.
    let mut group = Vec::new();
    let mut strangers = Vec::new();
    for photo in [
        "sample1.jpg",
        "sample2.jpg",
        "sample4.jpg",
        "sample6.jpg",
        "test.jpg",
    ] {
        let faces = embed_all(&decode(Path::new(&media(photo)), None), &mut det, &emb);
        for i in 0..faces.len() {
            for j in i + 1..faces.len() {
                group.push(faces[i].cosine(&faces[j]));
            }
        }
        strangers.extend(faces);
    }
    let (_, group_max) = summary("impostor, people of one group photo", &group);
    let (_, stranger_max) = summary(
        "impostor, man vs group photo people",
        &pairs(&man_a, &strangers),
    );
    assert!(group.len() >= 10, "only {} group pairs", group.len());
    // The margins are small because the set is: a few dozen pairs (README says so).
    assert!(same_min >= THRESHOLD + 0.04, "same person: {same_min}");
    assert!(woman_min >= THRESHOLD + 0.04, "same person: {woman_min}");
    for (what, max) in [
        ("man vs woman", cross_max),
        ("group photos", group_max),
        ("man vs strangers", stranger_max),
    ] {
        assert!(max <= THRESHOLD - 0.05, "{what}: {max}");
    }

    // Cost of one embedding (batch 1, this machine's CPU, warm): printed for the README.
    let clip = frames("single_face.mp4", 2, 0.0, 10.0, 1);
    let face = largest(&clip[0].detect(&mut det, &DetectParams::default())).unwrap();
    let (_, planes) = clip[0].frame();
    let frame = frame_of(&clip[0], &planes);
    let start = std::time::Instant::now();
    let runs = 20;
    for _ in 0..runs {
        emb.embed(&frame, &[face.landmarks]).unwrap();
    }
    println!(
        "one embedding incl. alignment: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3 / runs as f64
    );
}

/// A temporary folder named after `name`, removed when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(name).tempdir().unwrap()
}

#[test]
fn a_library_from_one_clip_names_the_person_in_another_and_nobody_else() {
    let lib = temp_dir("rf-identify-library");
    // The man from two frames of one clip, the woman from one frame of hers; a group photo and
    // a photo without faces that must be skipped by name.
    for (i, f) in frames("single_face.mp4", 1, 0.0, 10.0, 2)
        .iter()
        .enumerate()
    {
        save_png(f, &lib.path().join(format!("Man/{i}.png")));
    }
    save_png(
        &frames("WolfgangLanger_Pexels.mp4", 1, 2.0, 30.0, 1)[0],
        &lib.path().join("Woman/1.png"),
    );
    fs::copy(media("sample1.jpg"), lib.path().join("Man/group.jpg")).unwrap();
    fs::copy(media("test5.jpg"), lib.path().join("Woman/nobody.jpg")).unwrap();
    fs::write(lib.path().join("Woman/broken.jpg"), b"not a jpeg").unwrap();

    // Both models through one registry, as the elements share them.
    let registry = Registry::new();
    let emb = embedder_in(&registry);
    let mut det = detector();
    let (library, report) =
        Library::load(lib.path(), &mut det, &DetectParams::default(), &emb).expect("library loads");
    let names: Vec<_> = library.people.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Man", "Woman"]);
    assert_eq!(library.people[0].embeddings.len(), 2);
    assert_eq!(library.people[1].embeddings.len(), 1);
    let mut skipped: Vec<(String, &SkipReason)> = report
        .skipped
        .iter()
        .map(|s| {
            let file = s
                .path
                .strip_prefix(lib.path())
                .unwrap()
                .display()
                .to_string();
            (file, &s.reason)
        })
        .collect();
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped[0].0, "Man/group.jpg");
    assert!(
        matches!(skipped[0].1, SkipReason::SeveralFaces(3)),
        "{skipped:?}"
    );
    assert_eq!(skipped[1].0, "Woman/broken.jpg");
    assert!(matches!(skipped[1].1, SkipReason::Unreadable(_)));
    assert_eq!(
        (skipped[2].0.as_str(), skipped[2].1),
        ("Woman/nobody.jpg", &SkipReason::NoFace)
    );
    for s in &report.skipped {
        let text = s.to_string();
        assert!(text.contains(&s.path.display().to_string()), "{text}");
    }
    assert_eq!((report.cached, report.computed), (0, 5));
    assert_eq!(report.cache_error, None);

    // The cache: owner-only, and a second load computes nothing and gives the same library.
    let cache = lib.path().join(CACHE_FILE);
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let (again, report) =
        Library::load(lib.path(), &mut det, &DetectParams::default(), &emb).unwrap();
    assert_eq!((report.cached, report.computed), (5, 0));
    assert_eq!(
        report.skipped.len(),
        3,
        "the skipped photos are named again"
    );
    assert_eq!(
        again.people[0].embeddings, library.people[0].embeddings,
        "from the cache, bit for bit"
    );

    // The man in the other clip is named; the woman in her other frames too; the people of the
    // group photos (not in the library) never are.
    let man = embed_largest(&frames("face_noface.mov", 4, 0.0, 2.2, 8), &mut det, &emb);
    let woman = embed_largest(
        &frames("WolfgangLanger_Pexels.mp4", 1, 6.0, 30.0, 6),
        &mut det,
        &emb,
    );
    for e in &man {
        assert_eq!(
            library.identify(e, THRESHOLD).map(|m| m.name),
            Some("Man".into())
        );
    }
    for e in &woman {
        assert_eq!(
            library.identify(e, THRESHOLD).map(|m| m.name),
            Some("Woman".into())
        );
    }
    for photo in ["sample2.jpg", "sample4.jpg", "sample6.jpg", "test.jpg"] {
        for e in embed_all(&decode(Path::new(&media(photo)), None), &mut det, &emb) {
            assert_eq!(
                library.identify(&e, THRESHOLD),
                None,
                "{photo}: a stranger named"
            );
        }
    }

    // Enrolment from the unknown folder: the aligned crop of a face of the other clip, written
    // as an unknown face (mode 0600) and moved into the man's folder, is found and embedded
    // again, and it is the man.
    let other = &frames("face_noface.mov", 1, 1.0, 2.2, 1)[0];
    let face = largest(&other.detect(&mut det, &DetectParams::default())).unwrap();
    let (_, planes) = other.frame();
    let crop = aligned_rgb(&frame_of(other, &planes), &face.landmarks, CROP_SIDE).unwrap();
    let unknown = temp_dir("rf-identify-unknown");
    let written = write_unknown(unknown.path(), "stream0 track:7", &crop, CROP_SIDE).unwrap();
    assert_eq!(written.file_name().unwrap(), "stream0_track_7.jpg");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&written).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    fs::rename(&written, lib.path().join("Man/enrolled.jpg")).unwrap();
    let (enrolled, report) =
        Library::load(lib.path(), &mut det, &DetectParams::default(), &emb).unwrap();
    assert_eq!(report.computed, 1, "{:?}", report.skipped);
    assert_eq!(
        enrolled.people[0].embeddings.len(),
        3,
        "the crop is a usable photo"
    );
    let crop_embedding = enrolled.people[0]
        .embeddings
        .iter()
        .find(|e| !library.people[0].embeddings.contains(e));
    let m = library
        .identify(crop_embedding.unwrap(), THRESHOLD)
        .unwrap();
    assert_eq!(m.name, "Man");
    fs::remove_file(lib.path().join("Man/enrolled.jpg")).unwrap();

    // A person added while running: the next load picks them up (from the cache for the rest).
    save_png(
        &frames("WolfgangLanger_Pexels.mp4", 1, 2.0, 30.0, 1)[0],
        &lib.path().join("Wolfgang/portrait.png"),
    );
    let (grown, report) =
        Library::load(lib.path(), &mut det, &DetectParams::default(), &emb).unwrap();
    assert_eq!(grown.people.len(), 3);
    assert_eq!(report.computed, 0, "same bytes as Woman/1.png: a cache hit");
    // Deleting a person's folder deletes them, and their entries leave the cache.
    fs::remove_dir_all(lib.path().join("Woman")).unwrap();
    fs::remove_dir_all(lib.path().join("Wolfgang")).unwrap();
    let (shrunk, _) = Library::load(lib.path(), &mut det, &DetectParams::default(), &emb).unwrap();
    assert_eq!(shrunk.people.len(), 1);
    let cache_len = fs::metadata(&cache).unwrap().len();
    assert!(
        cache_len < 2 * (512 * 4 + 64) + 200,
        "woman's entry left: {cache_len} bytes"
    );
    assert_eq!(
        registry.live(),
        1,
        "the library's embedder is the registry's one engine"
    );
}

/// The embedding of the largest face of each image from its box crop stretched to the model's
/// 112×112 input, without alignment: the baseline alignment is measured against.
fn embed_unaligned(images: &[Rgb], det: &mut Detector, emb: &Embedder) -> Vec<Embedding> {
    use retinaface::contract::ColorOrder;
    use retinaface::preprocess::{InputGeometry, Preprocessor};
    let contract = retinaface::ModelContract {
        color_order: ColorOrder::Rgb,
        mean: [127.0; 3],
        std: [128.0; 3],
        ..Default::default()
    };
    let geometry = InputGeometry {
        width: 112,
        height: 112,
        content_width: 112,
        content_height: 112,
    };
    let mut pre = Preprocessor::new();
    let mut crops = Vec::new();
    for img in images {
        let Some(face) = largest(&img.detect(det, &DetectParams::default())) else {
            continue;
        };
        let (_, planes) = img.frame();
        let frame = frame_of(img, &planes);
        let [x0, y0, x1, y1] = face.bbox.map(|v| v.max(0.0) as usize);
        let crop = frame.crop(x0, y0, x1 - x0, y1 - y0);
        let mut t = retinaface::engine::Tensor::new(vec![3, 112, 112]);
        pre.fill(
            &crop.frame(),
            geometry,
            &contract,
            retinaface::ScaleFilter::Bilinear,
            &mut t.data,
        )
        .unwrap();
        crops.push(t);
    }
    emb.submit(crops)
        .iter()
        .map(|t| {
            emb.read(&t.wait(std::time::Duration::from_secs(30)).unwrap())
                .unwrap()
        })
        .collect()
}

/// Prints ROC points: TAR at FAR 1e-2 and at the lowest FAR this many impostor pairs can show
/// (none accepted, FAR < 1/n; a FAR of 1e-3 needs ≥ 1,000 impostor pairs), and TAR/FAR at the
/// element's threshold.
fn roc(what: &str, genuine: &[f32], impostor: &[f32]) {
    let mut imp = impostor.to_vec();
    imp.sort_by(|a, b| b.total_cmp(a));
    let tar_above =
        |t: f32| genuine.iter().filter(|g| **g > t).count() as f64 / genuine.len() as f64;
    let n = imp.len();
    // Accepting scores above the (k+1)-th highest impostor accepts k impostors.
    let k = (0.01 * n as f64).floor() as usize;
    let at_1e2 = imp[k.min(n - 1)];
    let far_at = imp.iter().filter(|i| **i >= THRESHOLD).count() as f64 / n as f64;
    let tar_at = genuine.iter().filter(|g| **g >= THRESHOLD).count() as f64 / genuine.len() as f64;
    println!(
        "{what}: ROC on {} genuine / {n} impostor pairs: TAR {:.3} at FAR 1e-2 (threshold {at_1e2:.3}); TAR {:.3} at FAR < 1/{n} (threshold {:.3}); at {THRESHOLD}: TAR {tar_at:.3}, FAR {far_at:.4}",
        genuine.len(),
        tar_above(at_1e2),
        tar_above(imp[0]),
        imp[0],
    );
}

/// Aligned crops against unaligned box crops on the same frames: the gap between genuine and
/// impostor pairs (printed for the README; asserted only to be wider with alignment).
#[test]
fn alignment_separates_people_better_than_box_crops() {
    let (mut det, emb) = (detector(), embedder());
    let man_a = frames("single_face.mp4", 2, 0.0, 10.0, 8);
    let man_b = frames("face_noface.mov", 4, 0.0, 2.2, 8);
    let woman = frames("WolfgangLanger_Pexels.mp4", 2, 0.0, 30.0, 8);
    let mut gaps = Vec::new();
    for (what, embed) in [
        (
            "aligned",
            embed_largest as fn(&[Rgb], &mut Detector, &Embedder) -> Vec<Embedding>,
        ),
        ("box crop", embed_unaligned),
    ] {
        let (a, b, w) = (
            embed(&man_a, &mut det, &emb),
            embed(&man_b, &mut det, &emb),
            embed(&woman, &mut det, &emb),
        );
        let mut genuine = pairs(&a, &b);
        genuine.extend(pairs(&w, &w).into_iter().filter(|c| *c < 0.9999));
        let mut impostor = pairs(&a, &w);
        impostor.extend(pairs(&b, &w));
        let (g_min, _) = summary(&format!("{what}: genuine"), &genuine);
        let (_, i_max) = summary(&format!("{what}: impostor"), &impostor);
        gaps.push(g_min - i_max);
        roc(what, &genuine, &impostor);
    }
    println!(
        "gap (lowest genuine − highest impostor): aligned {:.3}, box crop {:.3}",
        gaps[0], gaps[1]
    );
    assert!(gaps[0] > gaps[1], "{gaps:?}");
}

/// The RetinaFace model given as the embedding model fails its load with a message that says
/// what an embedding model must look like and what the file has; a missing file says so.
#[test]
fn a_model_that_is_not_an_embedding_model_is_refused_clearly() {
    let connect = |path: &str| {
        let key = EngineKey::new(Path::new(path), &SessionConfig::default());
        Embedder::connect(&Registry::new(), key, &[], ClientOptions::default())
    };
    let Err(err) = connect(&model("retinaface-mv025.onnx")) else {
        panic!("the detector model was taken for an embedding model");
    };
    let text = err.to_string();
    assert!(
        matches!(err, retinaface::embedding::EmbedError::Contract { .. }),
        "{err:?}"
    );
    for part in [
        "retinaface-mv025.onnx",
        "face embedding contract",
        "[N,3,H,W] with fixed H, W",
        "found inputs 'input'",
    ] {
        assert!(text.contains(part), "'{part}' missing in: {text}");
    }
    let Err(err) = connect("/nonexistent/embedder.onnx") else {
        panic!("a missing file loaded");
    };
    assert!(
        err.to_string().contains("/nonexistent/embedder.onnx"),
        "{err}"
    );
}
