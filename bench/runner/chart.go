package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// colors gives each build one color in every panel.
var colors = map[string]string{"patched": "#1b7837", "pristine": "#b2182b", "old": "#2166ac"}

// chart returns an SVG with two panels: the median wall time of each scenario and build with
// its min–max range (log scale), and the per-layer time of the growth scenario.
func chart(runs *runsFile, labels map[string]string) string {
	var w strings.Builder
	const width, height = 980, 400
	fmt.Fprintf(&w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" `+
		`viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&w, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	timesPanel(&w, runs, labels, 10, 10, 560, height-20)
	growthPanel(&w, runs, labels, 590, 10, 380, height-20)
	w.WriteString("</svg>\n")
	return w.String()
}

// text writes an SVG text element; anchor is "start", "middle" or "end".
func text(w *strings.Builder, x, y float64, anchor, attrs, s string) {
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor,
		attrs, html.EscapeString(s))
}

// line writes an SVG line element.
func line(w *strings.Builder, x1, y1, x2, y2 float64, attrs string) {
	fmt.Fprintf(w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" %s/>`+"\n", x1, y1, x2, y2,
		attrs)
}

// timesPanel draws horizontal bars of median wall time, on a logarithmic axis.
func timesPanel(w *strings.Builder, runs *runsFile, labels map[string]string,
	x0, y0, width, height float64,
) {
	text(w, x0, y0+14, "start", `font-weight="bold" font-size="14"`,
		"Pull time, median with min–max (log scale)")
	const labelW = 230
	left, right := x0+labelW, x0+width-10
	top, bottom := y0+40, y0+height-30
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range runs.Scenarios {
		if s.Wall.Min > 0 {
			lo, hi = math.Min(lo, s.Wall.Min), math.Max(hi, s.Wall.Max)
		}
	}
	if math.IsInf(lo, 0) {
		return
	}
	decLo, decHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if decHi == decLo {
		decHi++
	}
	xOf := func(v float64) float64 {
		return left + (math.Log10(v)-decLo)/(decHi-decLo)*(right-left)
	}
	for d := decLo; d <= decHi; d++ {
		x := xOf(math.Pow(10, d))
		line(w, x, top-6, x, bottom, `stroke="#ddd"`)
		text(w, x, bottom+16, "middle", `fill="#444"`, msLabel(math.Pow(10, d)))
	}
	rowH := (bottom - top) / float64(len(runs.Scenarios))
	for i, s := range runs.Scenarios {
		y := top + float64(i)*rowH
		store := "every layer in the store"
		switch {
		case s.Scenario == "miss":
			store = "empty store"
		case s.FromALS == 0:
			store = "every layer in the store, not asked"
		}
		text(w, left-8, y+rowH/2-2, "end", "", labels[s.Variant])
		text(w, left-8, y+rowH/2+12, "end", `fill="#666" font-size="11"`, store)
		barY, barH := y+rowH*0.2, rowH*0.6
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" `+
			`opacity="0.85"/>`+"\n", left, barY, xOf(s.Wall.Median)-left, barH, colors[s.Variant])
		mid := barY + barH/2
		line(w, xOf(s.Wall.Min), mid, xOf(s.Wall.Max), mid, `stroke="black"`)
		for _, v := range []float64{s.Wall.Min, s.Wall.Max} {
			line(w, xOf(v), mid-5, xOf(v), mid+5, `stroke="black"`)
		}
		text(w, math.Min(xOf(s.Wall.Max)+6, right-60), barY-2, "start", `font-size="11"`,
			msLabel(s.Wall.Median))
	}
	line(w, left, bottom, right, bottom, `stroke="#444"`)
}

// growthPanel draws the per-layer time of the growth scenario against the layer count.
func growthPanel(w *strings.Builder, runs *runsFile, labels map[string]string,
	x0, y0, width, height float64,
) {
	text(w, x0, y0+14, "start", `font-weight="bold" font-size="14"`,
		"Pull from the store: time per layer")
	if len(runs.Growth) == 0 {
		return
	}
	left, right := x0+50, x0+width-20
	top, bottom := y0+110, y0+height-50
	var hi float64
	for _, g := range runs.Growth {
		hi = math.Max(hi, math.Max(math.Max(g.PerLayerMS, g.OldPerLayer),
			math.Max(g.TmpfsPerLayer, g.OldTmpfsPerLayer)))
	}
	hi = niceCeil(hi)
	n := len(runs.Growth)
	xOf := func(i int) float64 {
		if n == 1 {
			return (left + right) / 2
		}
		return left + float64(i)/float64(n-1)*(right-left)
	}
	yOf := func(v float64) float64 { return bottom - v/hi*(bottom-top) }
	for k := 0; k <= 4; k++ {
		v := hi * float64(k) / 4
		line(w, left, yOf(v), right, yOf(v), `stroke="#ddd"`)
		text(w, left-6, yOf(v)+4, "end", `fill="#444"`, fmt.Sprintf("%.3g", v))
	}
	text(w, x0+12, (top+bottom)/2, "middle",
		fmt.Sprintf(`transform="rotate(-90 %.1f %.1f)" fill="#444"`, x0+12, (top+bottom)/2),
		"ms per layer")
	for i, g := range runs.Growth {
		text(w, xOf(i), bottom+16, "middle", `fill="#444"`, fmt.Sprint(g.Layers))
	}
	text(w, (left+right)/2, bottom+32, "middle", `fill="#444"`, "layers in the image")
	fs := runs.Machine.Filesystem
	series := []struct {
		id, label, dash string
		val             func(growthRow) float64
	}{
		{"patched", labels["patched"] + ", " + fs, "", perLayer},
		{"old", labels["old"] + ", " + fs, "", oldPerLayer},
		{
			"patched", labels["patched"] + ", tmpfs", "6 4",
			func(g growthRow) float64 { return g.TmpfsPerLayer },
		},
		{
			"old", labels["old"] + ", tmpfs", "6 4",
			func(g growthRow) float64 { return g.OldTmpfsPerLayer },
		},
	}
	k := 0
	for _, s := range series {
		var pts []string
		for i, g := range runs.Growth {
			if s.val(g) > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(i), yOf(s.val(g))))
			}
		}
		if len(pts) == 0 {
			continue
		}
		stroke := fmt.Sprintf(`stroke="%s" stroke-width="2" stroke-dasharray="%s"`, colors[s.id],
			s.dash)
		fmt.Fprintf(w, `<polyline points="%s" fill="none" %s/>`+"\n", strings.Join(pts, " "),
			stroke)
		for i, g := range runs.Growth {
			if s.val(g) > 0 {
				fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", xOf(i),
					yOf(s.val(g)), colors[s.id])
			}
		}
		ly := y0 + 36 + float64(k)*16
		line(w, left, ly-4, left+28, ly-4, stroke)
		text(w, left+34, ly, "start", "", s.label)
		k++
	}
	line(w, left, bottom, right, bottom, `stroke="#444"`)
}

// msLabel formats milliseconds for an axis or a bar.
func msLabel(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.3g s", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.3g ms", v)
	}
	return fmt.Sprintf("%.2g ms", v)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
