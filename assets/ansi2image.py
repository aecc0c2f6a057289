#!/usr/bin/env python3
"""Turns a terminal capture with colours (`tmux capture-pane -p -e`) into an
SVG, or with `--png FILE` into a PNG (that needs Pillow):

    tmux capture-pane -p -e -t SESSION | python3 assets/ansi2image.py > dashboard.svg
    tmux capture-pane -p -e -t SESSION | python3 assets/ansi2image.py --png assets/dashboard.png

Only what tmux emits for the dashboard is understood: SGR bold, dim,
reverse, and the 16 named colours (plus 256-colour and RGB, roughly).
"""

import html
import re
import sys

CELL_W, CELL_H, FONT = 8.4, 17, 14
BG, FG = "#1d1f21", "#d0d0d0"
NAMED = ["#1d1f21", "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#d0d0d0",
         "#5c6370", "#ff7a85", "#b5e890", "#ffd787", "#7cc4ff", "#e29cf2", "#7fd9e0", "#ffffff"]


def colour_256(n):
    if n < 16:
        return NAMED[n]
    if n >= 232:
        v = 8 + (n - 232) * 10
        return f"#{v:02x}{v:02x}{v:02x}"
    n -= 16
    r, g, b = n // 36, (n // 6) % 6, n % 6
    step = lambda c: 0 if c == 0 else 55 + c * 40
    return f"#{step(r):02x}{step(g):02x}{step(b):02x}"


def parse(text):
    """Lines of cells: (char, style) with style = (fg, bg, bold, dim, reverse)."""
    lines = []
    style = [None, None, False, False, False]
    for raw in text.split("\n"):
        cells = []
        pos = 0
        for m in re.finditer(r"\x1b\[([0-9;]*)m|\x1b\[[0-9;?]*[A-Za-z]|([^\x1b])", raw):
            if m.group(2) is not None:
                cells.append((m.group(2), tuple(style)))
                continue
            if m.group(1) is None:
                continue
            codes = [int(c) if c else 0 for c in m.group(1).split(";")]
            i = 0
            while i < len(codes):
                c = codes[i]
                if c == 0:
                    style = [None, None, False, False, False]
                elif c == 1:
                    style[2] = True
                elif c == 2:
                    style[3] = True
                elif c == 7:
                    style[4] = True
                elif c == 22:
                    style[2] = style[3] = False
                elif c == 27:
                    style[4] = False
                elif 30 <= c <= 37:
                    style[0] = NAMED[c - 30]
                elif 90 <= c <= 97:
                    style[0] = NAMED[c - 90 + 8]
                elif c == 39:
                    style[0] = None
                elif 40 <= c <= 47:
                    style[1] = NAMED[c - 40]
                elif c == 49:
                    style[1] = None
                elif c in (38, 48) and i + 1 < len(codes):
                    if codes[i + 1] == 5 and i + 2 < len(codes):
                        col = colour_256(codes[i + 2])
                        i += 2
                    elif codes[i + 1] == 2 and i + 4 < len(codes):
                        col = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                        i += 4
                    else:
                        col = None
                    style[0 if c == 38 else 1] = col
                i += 1
        lines.append(cells)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def svg(lines):
    cols = max((len(l) for l in lines), default=0)
    width, height = cols * CELL_W + 2 * CELL_W, len(lines) * CELL_H + CELL_H
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">',
        f'<rect width="100%" height="100%" rx="6" fill="{BG}"/>',
        f'<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT}" '
        'xml:space="preserve">',
    ]
    for row, cells in enumerate(lines):
        y = CELL_H / 2 + row * CELL_H
        col = 0
        while col < len(cells):
            style = cells[col][1]
            end = col
            while end < len(cells) and cells[end][1] == style:
                end += 1
            text = "".join(c for c, _ in cells[col:end])
            fg, bg, bold, dim, reverse = style
            fg, bg = fg or FG, bg
            if reverse:
                fg, bg = (bg or BG), fg
            x = CELL_W + col * CELL_W
            if bg:
                out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{(end - col) * CELL_W:.1f}" '
                           f'height="{CELL_H}" fill="{bg}"/>')
            if text.strip():
                attrs = f'fill="{fg}"'
                if bold:
                    attrs += ' font-weight="bold"'
                if dim:
                    attrs += ' fill-opacity="0.6"'
                out.append(f'<text x="{x:.1f}" y="{y + CELL_H * 0.78:.1f}" {attrs} '
                           f'textLength="{(end - col) * CELL_W:.1f}" lengthAdjust="spacingAndGlyphs">'
                           f'{html.escape(text)}</text>')
            col = end
    out.append("</g></svg>")
    return "\n".join(out) + "\n"




def png(lines, path, scale=2):
    """The same picture as a PNG (needs Pillow and DejaVu Sans Mono)."""
    from PIL import Image, ImageDraw, ImageFont

    fonts = "/usr/share/fonts/truetype/dejavu/"
    size = FONT * scale
    regular = ImageFont.truetype(fonts + "DejaVuSansMono.ttf", size)
    bold = ImageFont.truetype(fonts + "DejaVuSansMono-Bold.ttf", size)
    fallback = ImageFont.truetype(fonts + "DejaVuSans.ttf", size)
    cw, ch = CELL_W * scale, CELL_H * scale
    cols = max((len(l) for l in lines), default=0)
    img = Image.new("RGB", (int((cols + 2) * cw), int((len(lines) + 1) * ch)), BG)
    draw = ImageDraw.Draw(img)
    rgb = lambda c: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))
    for row, cells in enumerate(lines):
        y = ch / 2 + row * ch
        for col, (char, (fg, bg, is_bold, dim, reverse)) in enumerate(cells):
            fg = fg or FG
            if reverse:
                fg, bg = (bg or BG), fg
            x = cw + col * cw
            if bg:
                draw.rectangle([x, y, x + cw, y + ch], fill=bg)
            if char == " ":
                continue
            colour = rgb(fg)
            if dim:
                back = rgb(bg or BG)
                colour = tuple(int(f * 0.6 + b * 0.4) for f, b in zip(colour, back))
            if "\u2500" <= char <= "\u259f":
                # Box drawing and blocks: drawn to fill the cell, so lines join.
                draw_block(draw, char, x, y, cw, ch, colour, scale)
                continue
            font = bold if is_bold else regular
            if font.getmask(char).getbbox() is None or char in "✓✗⚑":
                font = fallback
            draw.text((x, y + ch * 0.1), char, font=font, fill=colour)
    # A palette keeps the file small; antialiased text needs no more colours.
    img.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def draw_block(draw, char, x, y, cw, ch, colour, scale):
    mx, my, t = x + cw / 2, y + ch / 2, max(1, scale)
    eighths = "▏▎▍▌▋▊▉"
    if char == "█":
        draw.rectangle([x, y + 1, x + cw, y + ch - 1], fill=colour)
    elif char in eighths:
        w = cw * (eighths.index(char) + 1) / 8
        draw.rectangle([x, y + 1, x + w, y + ch - 1], fill=colour)
    elif char in "▁▂▃▄▅▆▇":
        h = ch * ("▁▂▃▄▅▆▇".index(char) + 1) / 8
        draw.rectangle([x, y + ch - h, x + cw, y + ch], fill=colour)
    elif char == "░":
        for i in range(0, int(cw), 2 * scale):
            for j in range(0, int(ch), 2 * scale):
                draw.point((x + i + (j // (2 * scale)) % 2 * scale, y + j), fill=colour)
    else:
        lines = {
            "─": "lr", "│": "ud", "┌": "rd", "┐": "ld", "└": "ru", "┘": "lu",
            "├": "udr", "┤": "udl", "┬": "lrd", "┴": "lru", "┼": "lrud",
        }.get(char, "")
        for d in lines:
            if d == "l":
                draw.rectangle([x, my - t / 2, mx, my + t / 2], fill=colour)
            if d == "r":
                draw.rectangle([mx, my - t / 2, x + cw, my + t / 2], fill=colour)
            if d == "u":
                draw.rectangle([mx - t / 2, y, mx + t / 2, my], fill=colour)
            if d == "d":
                draw.rectangle([mx - t / 2, my, mx + t / 2, y + ch], fill=colour)


if __name__ == "__main__":
    parsed = parse(sys.stdin.read())
    if len(sys.argv) == 3 and sys.argv[1] == "--png":
        png(parsed, sys.argv[2])
    else:
        sys.stdout.write(svg(parsed))
