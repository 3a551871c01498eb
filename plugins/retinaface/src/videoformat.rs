//! The one mapping between GStreamer's raw video descriptions and the core's pixel table
//! ([`retinaface::pixfmt`]): `VideoFormat` ↔ [`PixelLayout`] and `VideoColorimetry` →
//! [`YuvMatrix`]. The detector and the overlay both negotiate and read frames through here, so
//! the formats they accept, the planes they read and the colours they use cannot drift apart.

use gst_video::prelude::*;
use gst_video::{VideoColorMatrix, VideoColorRange, VideoColorimetry, VideoFormat};
use retinaface::{PixelLayout, YuvMatrix};

/// The core's view of a mapped `frame` in `layout` (planes, size, the caps' YUV matrix), for
/// the time `f` runs: how the detector and the motion element hand frames to the core.
pub fn with_core_frame<R>(
    frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    layout: PixelLayout,
    f: impl FnOnce(&retinaface::Frame) -> R,
) -> R {
    let planes: Vec<retinaface::Plane> = (0..frame.n_planes())
        .map(|i| retinaface::Plane {
            data: frame.plane_data(i).unwrap_or(&[]),
            stride: frame.plane_stride()[i as usize] as usize,
        })
        .collect();
    let info = frame.info();
    f(&retinaface::Frame {
        layout,
        width: info.width() as usize,
        height: info.height() as usize,
        planes: &planes,
        matrix: yuv_matrix(&info.colorimetry()),
    })
}

/// `video/x-raw` in [`FORMATS`], any size and rate: what the detector, the tracker and the
/// overlay accept.
pub fn raw_video_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS.iter().copied())
        .build()
}

/// GStreamer's name for `layout` (exhaustive: a new layout must be mapped here).
pub const fn video_format(layout: PixelLayout) -> VideoFormat {
    match layout {
        PixelLayout::Rgb => VideoFormat::Rgb,
        PixelLayout::Bgr => VideoFormat::Bgr,
        PixelLayout::Rgbx => VideoFormat::Rgbx,
        PixelLayout::Bgrx => VideoFormat::Bgrx,
        PixelLayout::Xrgb => VideoFormat::Xrgb,
        PixelLayout::Xbgr => VideoFormat::Xbgr,
        PixelLayout::Rgba => VideoFormat::Rgba,
        PixelLayout::Bgra => VideoFormat::Bgra,
        PixelLayout::Argb => VideoFormat::Argb,
        PixelLayout::Abgr => VideoFormat::Abgr,
        PixelLayout::I420 => VideoFormat::I420,
        PixelLayout::Nv12 => VideoFormat::Nv12,
    }
}

/// Every supported format, in [`PixelLayout::ALL`] order.
pub const FORMATS: [VideoFormat; PixelLayout::ALL.len()] = {
    let mut formats = [VideoFormat::Unknown; PixelLayout::ALL.len()];
    let mut i = 0;
    while i < formats.len() {
        formats[i] = video_format(PixelLayout::ALL[i]);
        i += 1;
    }
    formats
};

/// The layout of a GStreamer format; `None` for formats the elements do not handle.
pub fn pixel_layout(format: VideoFormat) -> Option<PixelLayout> {
    PixelLayout::ALL
        .into_iter()
        .find(|&layout| video_format(layout) == format)
}

/// YUV matrix and range of a frame's colorimetry: BT.709 and BT.2020 as signalled, BT.601
/// otherwise; full range only when the caps say 0..255 (unknown = studio range, as GStreamer
/// assumes for YUV).
pub fn yuv_matrix(colorimetry: &VideoColorimetry) -> YuvMatrix {
    let matrix = match colorimetry.matrix() {
        VideoColorMatrix::Bt709 => YuvMatrix::BT709,
        VideoColorMatrix::Bt2020 => YuvMatrix::BT2020,
        _ => YuvMatrix::BT601,
    };
    matrix.with_full_range(colorimetry.range() == VideoColorRange::Range0_255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_layouts_map_both_ways() {
        gst::init().unwrap();
        for layout in PixelLayout::ALL {
            let format = video_format(layout);
            assert_eq!(pixel_layout(format), Some(layout));
            // The core table agrees with GStreamer's own description of the format.
            let info = gst_video::VideoFormatInfo::from_format(format);
            let table = layout.format();
            assert_eq!(info.n_planes() as usize, table.planes.len(), "{format:?}");
            assert_eq!(info.is_yuv(), layout.is_yuv(), "{format:?}");
            for (c, component) in table.components.iter().enumerate() {
                assert_eq!(info.plane()[c] as usize, component.plane, "{format:?} {c}");
                assert_eq!(
                    info.poffset()[c] as usize,
                    component.offset,
                    "{format:?} {c}"
                );
                assert_eq!(
                    info.pixel_stride()[c] as usize,
                    table.planes[component.plane].bytes_per_sample,
                    "{format:?} {c}"
                );
                let sub = table.planes[component.plane].subsampling;
                assert_eq!(1 << info.w_sub()[c], sub, "{format:?} {c}");
                assert_eq!(1 << info.h_sub()[c], sub, "{format:?} {c}");
            }
        }
        assert_eq!(pixel_layout(VideoFormat::Yuy2), None);
        assert_eq!(FORMATS.len(), 12);
    }

    #[test]
    fn colorimetry_gives_matrix_and_range() {
        gst::init().unwrap();
        let c = |range, matrix| {
            VideoColorimetry::new(
                range,
                matrix,
                gst_video::VideoTransferFunction::Bt709,
                gst_video::VideoColorPrimaries::Bt709,
            )
        };
        assert_eq!(
            yuv_matrix(&c(VideoColorRange::Range0_255, VideoColorMatrix::Bt601)),
            YuvMatrix::BT601.with_full_range(true)
        );
        assert_eq!(
            yuv_matrix(&c(VideoColorRange::Range16_235, VideoColorMatrix::Bt709)),
            YuvMatrix::BT709
        );
        assert_eq!(
            yuv_matrix(&c(VideoColorRange::Unknown, VideoColorMatrix::Bt2020)),
            YuvMatrix::BT2020
        );
        let jpeg: VideoColorimetry = "1:4:0:0".parse().unwrap();
        assert_eq!(yuv_matrix(&jpeg), YuvMatrix::BT601.with_full_range(true));
    }
}
