//! The ready-made scripts in pipelines/ that can run headless, run as a user would run them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use retinaface_testkit::*;

/// Runs `pipelines/<script>` with `args` against the plugin built for these tests.
fn script(name: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name);
    let mut child = Command::new(&path)
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let status = wait_with_timeout(&mut child, Duration::from_secs(180))
        .unwrap_or_else(|| panic!("{name} hung"));
    assert!(status.success(), "{name} {args:?} failed: {status}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retinaface-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Frames of a media file, decoded.
fn decoded_frames(path: &Path) -> usize {
    run(&format!(
        "filesrc location={} ! decodebin ! video/x-raw ! appsink name=sink",
        path.display()
    ))
    .unwrap()
    .samples
    .len()
}

#[test]
fn video_to_annotated_mp4_and_json() {
    let dir = scratch("mp4");
    let (mp4, json) = (dir.join("out.mp4"), dir.join("out.jsonl"));
    script(
        "detect-to-mp4.sh",
        &[
            &media("single_face.mp4"),
            mp4.to_str().unwrap(),
            json.to_str().unwrap(),
        ],
    );
    let lines = json_lines(&json);
    assert!(lines.len() > 50);
    assert!(
        lines
            .iter()
            .filter(|l| !l["faces"].as_array().unwrap().is_empty())
            .count()
            * 10
            >= lines.len() * 9
    );
    assert_eq!(
        decoded_frames(&mp4),
        lines.len(),
        "every analysed frame is in the video"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn video_to_json() {
    let dir = scratch("json");
    let json = dir.join("faces.jsonl");
    script(
        "detect-to-json.sh",
        &[&media("no_face.mp4"), json.to_str().unwrap(), "interval=2"],
    );
    let lines = json_lines(&json);
    assert!(
        lines.len() > 50
            && lines
                .iter()
                .all(|l| l["faces"].as_array().unwrap().is_empty())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn privacy_recorder_writes_playable_segments() {
    let dir = scratch("segments");
    script(
        "privacy-recorder.sh",
        &[&media("single_face.mp4"), dir.to_str().unwrap(), "1"],
    );
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    // The HLS playlist lists every segment, in order, and says the recording is complete.
    let playlist = std::fs::read_to_string(dir.join("playlist.m3u8")).unwrap();
    let listed: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
    let names: Vec<&str> = segments
        .iter()
        .map(|s| s.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(listed, names, "{playlist}");
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    // Each segment decodes on its own (starts at a key frame) and together they hold every frame.
    let total: usize = segments.iter().map(|s| decoded_frames(s)).sum();
    let source = decoded_frames(Path::new(&media("single_face.mp4")));
    assert_eq!(total, source, "frames in {segments:?}");
    // The faces are blurred in the recording: the detector finds far fewer of them there.
    let found: usize = segments
        .iter()
        .map(|s| {
            let run = run(&format!("filesrc location={} ! decodebin ! video/x-raw ! retinafacedetect ! appsink name=sink", s.display()));
            run.unwrap().faces().iter().filter(|f| !f.is_empty()).count()
        })
        .sum();
    assert!(
        found * 4 < total,
        "faces still visible on {found} of {total} recorded frames"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn nvr_script_writes_faces_per_camera_and_blurred_recordings_in_one_process() {
    let dir = scratch("nvr");
    let cameras = [media("single_face.mp4"), media("face_noface.mov")];
    script(
        "nvr.sh",
        &["--record", dir.to_str().unwrap(), &cameras[0], &cameras[1]],
    );
    for (i, camera) in cameras.iter().enumerate() {
        let name = format!("cam{}", i + 1);
        let lines = json_lines(&dir.join(format!("{name}.jsonl")));
        let frames = decoded_frames(Path::new(camera));
        assert_eq!(lines.len(), frames, "{name}: a line per frame of {camera}");
        let with_faces: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| !l["faces"].as_array().unwrap().is_empty())
            .collect();
        assert!(
            with_faces.len() * 4 >= frames,
            "{name}: faces on {} of {frames} frames",
            with_faces.len()
        );
        assert!(
            with_faces
                .iter()
                .any(|l| l["faces"][0]["id"].as_u64().is_some_and(|id| id > 0)),
            "{name}: faces are tracked"
        );
        // The recording holds every frame, with the faces blurred.
        let playlist = std::fs::read_to_string(dir.join(&name).join("playlist.m3u8")).unwrap();
        assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
        let segments: Vec<PathBuf> = playlist
            .lines()
            .filter(|l| l.ends_with(".ts"))
            .map(|l| dir.join(&name).join(l))
            .collect();
        let recorded: usize = segments.iter().map(|s| decoded_frames(s)).sum();
        assert_eq!(recorded, frames, "{name}: frames recorded");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn still_image_to_png_and_json() {
    let dir = scratch("png");
    let (png, json) = (dir.join("faces.png"), dir.join("faces.json"));
    script(
        "image-to-png.sh",
        &[
            &media("sample4.jpg"),
            png.to_str().unwrap(),
            json.to_str().unwrap(),
        ],
    );
    let lines = json_lines(&json);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["faces"].as_array().unwrap().len(), 4);
    let run = run(&format!(
        "filesrc location={} ! pngdec ! appsink name=sink",
        png.display()
    ))
    .unwrap();
    assert_eq!(
        run.size(),
        (
            lines[0]["width"].as_f64().unwrap(),
            lines[0]["height"].as_f64().unwrap()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn identify_script_names_the_man_in_the_recording_and_its_json() {
    let dir = scratch("identify");
    // The library: the man from two frames of another clip of him.
    for (i, f) in clips::frames("single_face.mp4", 1, 0.0, 10.0, 2)
        .iter()
        .enumerate()
    {
        clips::save_png(f, &dir.join(format!("library/Man/{i}.png")));
    }
    let (mp4, json) = (dir.join("named.mp4"), dir.join("named.jsonl"));
    script(
        "identify.sh",
        &[
            dir.join("library").to_str().unwrap(),
            &media("face_noface.mov"),
            mp4.to_str().unwrap(),
        ],
    );
    let lines = json_lines(&json);
    let named = lines
        .iter()
        .flat_map(|l| l["faces"].as_array().unwrap().clone())
        .filter(|f| f["name"] == "Man")
        .count();
    assert!(named >= 30, "the man is named on {named} faces");
    assert_eq!(decoded_frames(&mp4), lines.len(), "every frame recorded");
    std::fs::remove_dir_all(dir).unwrap();
}
