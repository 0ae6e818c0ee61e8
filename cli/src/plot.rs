//! SVG plots of a training history (plotters' SVG backend; no fonts needed).

use lossgraph::train::logs::EntryKind;
use lossgraph::History;
use plotters::prelude::*;

/// One curve: a label and one value per epoch (epoch 1 first).
pub struct Series<'a> {
    pub label: &'a str,
    pub values: &'a [f64],
}

/// One panel: a title (also the y-axis label), its curves, and whether
/// its values are fractions (the axis then ends at 1).
pub struct Panel<'a> {
    pub title: &'a str,
    pub series: &'a [Series<'a>],
    pub unit_range: bool,
}

/// The panels of a training history, from what it logged: the total loss
/// (training and validation), every term of it on its own curve (the
/// compiled loss, per-output losses and each added loss, training values),
/// then one panel per metric or other logged value (training and
/// validation; accuracies on a [0, 1] axis).
pub fn history_panels_svg(history: &History) -> Result<String, String> {
    let mut names: Vec<String> = Vec::new();
    for logs in &history.epochs {
        for (k, _) in logs.entries() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let values: Vec<(String, Vec<f64>)> = names
        .iter()
        .map(|n| {
            let v = history
                .epochs
                .iter()
                .map(|l| l.get(n).unwrap_or(f64::NAN))
                .collect();
            (n.clone(), v)
        })
        .collect();
    let train = |kind: fn(EntryKind) -> bool| -> Vec<&(String, Vec<f64>)> {
        values
            .iter()
            .filter(|(n, _)| !n.starts_with("val_") && kind(EntryKind::of(n)))
            .collect()
    };
    let val_of = |n: &str| {
        values
            .iter()
            .find(|(v, _)| v.strip_prefix("val_") == Some(n))
    };
    let total: Vec<Series<'_>> = train(|k| k == EntryKind::Total)
        .into_iter()
        .flat_map(|(n, v)| {
            let mut s = vec![Series {
                label: "training",
                values: v,
            }];
            if let Some((_, vv)) = val_of(n) {
                s.push(Series {
                    label: "validation",
                    values: vv,
                });
            }
            s
        })
        .collect();
    let terms: Vec<Series<'_>> = train(|k| k.is_loss() && k != EntryKind::Total)
        .into_iter()
        .map(|(n, v)| Series {
            label: n,
            values: v,
        })
        .collect();
    let others: Vec<(&String, Vec<Series<'_>>)> = train(|k| !k.is_loss())
        .into_iter()
        .map(|(n, v)| {
            let mut s = vec![Series {
                label: "training",
                values: v,
            }];
            if let Some((_, vv)) = val_of(n) {
                s.push(Series {
                    label: "validation",
                    values: vv,
                });
            }
            (n, s)
        })
        .collect();
    let mut panels = vec![Panel {
        title: "total loss",
        series: &total,
        unit_range: false,
    }];
    if !terms.is_empty() {
        panels.push(Panel {
            title: "loss per term (training)",
            series: &terms,
            unit_range: false,
        });
    }
    for (n, s) in &others {
        panels.push(Panel {
            title: n,
            series: s,
            unit_range: n.ends_with("accuracy"),
        });
    }
    panels_svg(&panels)
}

/// Renders `panels` stacked top to bottom (360 px each), each with its
/// curves against the epoch number. Non-finite values are skipped.
pub fn panels_svg(panels: &[Panel<'_>]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let height = 360 * panels.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (800, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (p, area) in panels.iter().zip(&areas) {
            panel(area, p.title, p.series, p.unit_range)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A grid of grey-scale images (`side × side` values in `[0, 1]` each,
/// row-major; 1 is black ink), `cols` images per row, as an SVG document.
pub fn image_grid_svg(images: &[Vec<f32>], side: usize, cols: usize) -> String {
    let cell = 6usize;
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols);
    let (w, h) = (cols * (side + 1) * cell, rows.max(1) * (side + 1) * cell);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    );
    for (k, img) in images.iter().enumerate() {
        let (x0, y0) = (
            (k % cols) * (side + 1) * cell,
            (k / cols) * (side + 1) * cell,
        );
        for (i, v) in img.iter().enumerate().take(side * side) {
            let g = (255.0 * (1.0 - v.clamp(0.0, 1.0))).round() as u8;
            s.push_str(&format!(
                "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({g},{g},{g})\"/>\n",
                x0 + (i % side) * cell,
                y0 + (i / side) * cell
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("plot: {e}")
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    series: &[Series<'_>],
    unit_range: bool,
) -> Result<(), String> {
    let epochs = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
    };
    let (mut lo, mut hi) = if unit_range {
        (0.0f64, 1.0f64)
    } else {
        let lo = finite().fold(f64::INFINITY, f64::min);
        let hi = finite().fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() {
            (lo.min(0.0), hi)
        } else {
            (0.0, 1.0)
        }
    };
    if hi <= lo {
        hi = lo + 1.0;
    }
    if !unit_range {
        hi += 0.05 * (hi - lo);
    } else {
        lo = finite().fold(1.0f64, f64::min).clamp(0.0, 1.0).min(0.9);
        lo = (lo * 10.0).floor() / 10.0;
        hi = 1.0;
    }
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1f64..(epochs as f64).max(2.0), lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(title)
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(e, &v)| ((e + 1) as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(rows: &[&[(&str, f64)]]) -> History {
        let mut h = History::default();
        for (e, row) in rows.iter().enumerate() {
            let mut l = lossgraph::Logs::default();
            for (k, v) in row.iter() {
                l.insert(k, *v);
            }
            h.epochs.push(l);
            h.epoch.push(e);
        }
        h
    }

    #[test]
    fn history_plot_has_every_loss_term_and_metric() {
        let row = |s: f64| -> Vec<(&'static str, f64)> {
            vec![
                ("loss", 1.0 * s),
                ("compiled_loss", 0.7 * s),
                ("custom_dense/add_loss", 0.2 * s),
                ("hidden/kernel_regularizer", 0.1 * s),
                ("accuracy", 0.5 / s),
                ("val_loss", 1.2 * s),
                ("val_compiled_loss", 0.9 * s),
                ("val_custom_dense/add_loss", 0.2 * s),
                ("val_hidden/kernel_regularizer", 0.1 * s),
                ("val_accuracy", f64::NAN),
            ]
        };
        let (a, b, c) = (row(1.0), row(0.8), row(0.6));
        let svg = history_panels_svg(&history(&[&a, &b, &c])).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "total loss",
            "loss per term (training)",
            "\ncompiled_loss\n",
            "\ncustom_dense/add_loss\n",
            "\nhidden/kernel_regularizer\n",
            "\ntraining\n",
            "\nvalidation\n",
            "\naccuracy\n",
            "epoch",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Three panels, 360 px each.
        assert!(svg.contains("height=\"1080\""), "{}", &svg[..200]);
        // Points: total 3 + 3 val, terms 3 × 3, accuracy 3 (val all NaN).
        assert_eq!(svg.matches("<circle").count(), 6 + 9 + 3);
    }

    #[test]
    fn image_grid_has_one_rect_per_pixel_and_maps_ink_to_black() {
        let imgs = vec![vec![0.0, 1.0, 0.5, 0.0], vec![1.0; 4], vec![0.0; 4]];
        let svg = image_grid_svg(&imgs, 2, 2);
        // Background plus 3 images × 4 pixels.
        assert_eq!(svg.matches("<rect").count(), 1 + 12);
        assert!(svg.contains("rgb(0,0,0)") && svg.contains("rgb(128,128,128)"));
        // Two columns of (2 + 1)·6 px, two rows.
        assert!(svg.contains("width=\"36\" height=\"36\""), "{svg}");
    }

    #[test]
    fn empty_history_still_renders() {
        let svg = history_panels_svg(&History::default()).unwrap();
        assert!(svg.contains("</svg>"));
    }
}
