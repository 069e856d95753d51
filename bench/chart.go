package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// targetColors and targetShapes tell the targets apart in the chart.
var (
	targetColors = map[string]color.Color{
		targetDirect:    color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff},
		targetPgbouncer: color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		targetCmpool:    color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	}
	targetShapes = map[string]draw.GlyphDrawer{
		targetDirect:    draw.BoxGlyph{},
		targetPgbouncer: draw.TriangleGlyph{},
		targetCmpool:    draw.CircleGlyph{},
	}
)

// writeChart draws median TPS by client count, one line per target and one panel per
// workload, into a PNG file.
func (r *report) writeChart(path string) error {
	cells := r.cells()
	cols := min(2, len(r.cfg.workloads))
	rows := (len(r.cfg.workloads) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for j := range plots {
		plots[j] = make([]*plot.Plot, cols)
	}
	for i, w := range r.cfg.workloads {
		p, err := r.workloadPlot(w, cells)
		if err != nil {
			return err
		}
		plots[i/cols][i%cols] = p
	}

	img := vgimg.New(vg.Length(cols)*12*vg.Centimeter, vg.Length(rows)*9*vg.Centimeter)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Centimeter, PadY: vg.Centimeter,
		PadTop: vg.Centimeter / 2, PadBottom: vg.Centimeter / 2, PadLeft: vg.Centimeter / 2, PadRight: vg.Centimeter / 2}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		for i, p := range plots[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// workloadPlot is one panel of the chart: TPS by client count on a log scale.
func (r *report) workloadPlot(w string, cells map[cellKey]*cell) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "pgbench " + workloadTitle(w)
	p.X.Label.Text = "clients"
	p.Y.Label.Text = "TPS (median)"
	p.Legend.Top = true
	p.Legend.Left = true

	clients := slices.Sorted(slices.Values(r.cfg.clients))
	var ticks []plot.Tick
	for _, c := range clients {
		ticks = append(ticks, plot.Tick{Value: float64(c), Label: strconv.Itoa(c)})
	}
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)

	maxTPS := 0.0
	for _, t := range targetNames {
		var xys plotter.XYs
		for _, c := range clients {
			tps := cells[cellKey{w, c, t}].medianTPS()
			if math.IsNaN(tps) {
				continue
			}
			xys = append(xys, plotter.XY{X: float64(c), Y: tps})
			maxTPS = max(maxTPS, tps)
		}
		name := t
		if len(xys) == 0 {
			p.Legend.Add(name + " (failed)")
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("chart %s %s: %w", w, t, err)
		}
		line.Color = targetColors[t]
		line.Width = vg.Points(1.5)
		points.Color = targetColors[t]
		points.Shape = targetShapes[t]
		points.Radius = vg.Points(3)
		p.Add(line, points)
		p.Legend.Add(name, line, points)
	}
	p.X.Min, p.X.Max = float64(clients[0])/1.5, float64(clients[len(clients)-1])*1.5
	p.Y.Min, p.Y.Max = 0, max(maxTPS*1.25, 1)
	p.Add(plotter.NewGrid())
	return p, nil
}

// workloadTitle is the pgbench options of a workload, for titles.
func workloadTitle(w string) string {
	if w == "tpcb" {
		return "TPC-B"
	}
	s := ""
	for i, a := range workloads[w] {
		if i > 0 {
			s += " "
		}
		s += a
	}
	return s
}
