"""Venice's 76 style presets (the names are Venice's, case-sensitive) and murano's own
prompt templates for them. `{prompt}` is the user's prompt; each style also adds words to
the negative prompt. The templates are ours, written for this project."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STYLES", "STYLE_NAMES", "Style", "apply_style"]


@dataclass(frozen=True, slots=True)
class Style:
    name: str
    positive: str
    negative: str

    def apply(self, prompt: str, negative_prompt: str | None) -> tuple[str, str]:
        neg = ", ".join(part for part in (negative_prompt, self.negative) if part)
        return self.positive.format(prompt=prompt), neg


def _s(name: str, positive: str, negative: str) -> Style:
    return Style(name, positive, negative)


_PHOTO_NEG = "drawing, painting, illustration, cartoon, low quality, blurry"
_ART_NEG = "photograph, photorealistic, low quality, blurry, watermark"
_GAME_NEG = "photograph, realistic, blurry, low resolution"
_PAPER_NEG = "photograph, glossy, plastic, 3d render, blurry"

STYLES: tuple[Style, ...] = (
    _s(
        "3D Model",
        "{prompt}, rendered as a polished 3D model, soft studio lighting, clean "
        "topology, octane-style render",
        "flat, 2d, sketch, painting, noisy",
    ),
    _s(
        "Analog Film",
        "{prompt}, shot on analog film, natural grain, muted faded colours, soft halation",
        "digital look, oversaturated, cgi, cartoon",
    ),
    _s(
        "Anime",
        "{prompt}, anime illustration, clean cel shading, expressive eyes, vivid "
        "colours, studio key visual",
        _ART_NEG,
    ),
    _s(
        "Cinematic",
        "{prompt}, cinematic still, anamorphic lens, dramatic lighting, shallow "
        "depth of field, colour graded",
        "cartoon, flat lighting, amateur, low quality",
    ),
    _s(
        "Comic Book",
        "{prompt}, comic book panel, bold ink outlines, halftone shading, dynamic composition",
        "photograph, realistic, blurry, washed out",
    ),
    _s(
        "Craft Clay",
        "{prompt}, handmade from modelling clay, visible fingerprints, soft "
        "rounded forms, stop-motion set",
        "photograph of a person, sketch, flat",
    ),
    _s(
        "Digital Art",
        "{prompt}, digital painting, crisp detail, rich colour, concept art",
        "photograph, low quality, blurry, jpeg artifacts",
    ),
    _s(
        "Enhance",
        "{prompt}, highly detailed, sharp focus, balanced composition, rich colour",
        "blurry, low quality, distorted, noisy",
    ),
    _s(
        "Fantasy Art",
        "{prompt}, epic fantasy artwork, luminous atmosphere, intricate detail, painterly",
        "photograph, modern, mundane, low quality",
    ),
    _s(
        "Isometric Style",
        "{prompt}, isometric view, clean geometric shapes, diorama, soft shadows",
        "perspective distortion, photograph, messy, blurry",
    ),
    _s(
        "Line Art",
        "{prompt}, clean line art, black ink on white, precise contours, no shading",
        "colour, photograph, gradients, blurry",
    ),
    _s(
        "Lowpoly",
        "{prompt}, low-poly 3D, faceted flat-shaded polygons, simple palette",
        "photograph, smooth, high poly, noisy",
    ),
    _s(
        "Neon Punk",
        "{prompt}, neon punk, glowing magenta and cyan lights, rain-slick streets, high contrast",
        "daylight, muted colours, dull, blurry",
    ),
    _s(
        "Origami",
        "{prompt}, folded paper origami, crisp creases, single sheet of paper",
        _PAPER_NEG,
    ),
    _s(
        "Photographic",
        "{prompt}, professional photograph, natural light, 50mm lens, sharp focus",
        _PHOTO_NEG,
    ),
    _s(
        "Pixel Art",
        "{prompt}, pixel art, limited palette, crisp pixels, 16-bit sprite style",
        "smooth gradients, photograph, blurry, anti-aliased",
    ),
    _s(
        "Texture",
        "{prompt}, seamless texture, top-down, even lighting, tileable surface detail",
        "perspective, objects, shadows, text",
    ),
    _s(
        "Advertising",
        "{prompt}, premium product advertisement, studio lighting, clean "
        "background, commercial photography",
        "amateur, cluttered, low quality",
    ),
    _s(
        "Food Photography",
        "{prompt}, appetising food photography, shallow depth of field, "
        "natural window light, styled plating",
        "unappetising, cartoon, low quality",
    ),
    _s(
        "Real Estate",
        "{prompt}, real estate photograph, bright wide-angle interior, straight verticals, tidy",
        "dark, distorted, cluttered, cartoon",
    ),
    _s(
        "Abstract",
        "{prompt}, abstract composition, bold shapes and colour fields, non-representational",
        "photograph, realistic, literal",
    ),
    _s(
        "Cubist",
        "{prompt}, cubist painting, fragmented planes, multiple viewpoints, muted earth tones",
        "photograph, realistic, smooth",
    ),
    _s(
        "Graffiti",
        "{prompt}, graffiti mural, spray paint, bold lettering shapes, urban wall",
        "clean, photograph, gallery, blurry",
    ),
    _s(
        "Hyperrealism",
        "{prompt}, hyperrealistic, extreme fine detail, lifelike textures, studio lighting",
        "cartoon, painting, stylised, blurry",
    ),
    _s(
        "Impressionist",
        "{prompt}, impressionist painting, loose visible brushstrokes, dappled light",
        "photograph, sharp lines, digital",
    ),
    _s(
        "Pointillism",
        "{prompt}, pointillist painting made of small dots of pure colour",
        "photograph, smooth shading, lines",
    ),
    _s(
        "Pop Art",
        "{prompt}, pop art, flat bold colours, ben-day dots, thick outlines",
        "photograph, muted, realistic",
    ),
    _s(
        "Psychedelic",
        "{prompt}, psychedelic art, swirling saturated colours, kaleidoscopic patterns",
        "muted, monochrome, realistic",
    ),
    _s(
        "Renaissance",
        "{prompt}, renaissance oil painting, chiaroscuro, classical composition, fine glazing",
        "modern, photograph, cartoon",
    ),
    _s(
        "Steampunk",
        "{prompt}, steampunk, brass gears, Victorian machinery, warm sepia light",
        "modern, plastic, minimal",
    ),
    _s(
        "Surrealist",
        "{prompt}, surrealist painting, dreamlike impossible scene, precise rendering",
        "mundane, photograph, low quality",
    ),
    _s(
        "Typography",
        "{prompt}, typographic poster, strong lettering as the main element, clean layout",
        "photograph, clutter, blurry",
    ),
    _s(
        "Watercolor",
        "{prompt}, watercolour painting, soft washes, paper texture, gentle bleeding edges",
        "photograph, hard edges, digital",
    ),
    _s(
        "Fighting Game",
        "{prompt}, fighting game character art, dynamic pose, energy effects, versus screen",
        _GAME_NEG,
    ),
    _s(
        "GTA",
        "{prompt}, open-world crime game cover art style, bold illustrated portrait panels",
        _GAME_NEG,
    ),
    _s(
        "Super Mario",
        "{prompt}, bright platformer game world, rounded shapes, cheerful primary colours",
        _GAME_NEG,
    ),
    _s(
        "Minecraft",
        "{prompt}, blocky voxel game world, cube-shaped everything, pixel textures",
        "smooth, curved, realistic",
    ),
    _s(
        "Pokemon",
        "{prompt}, creature-collecting game art, cute rounded creature design, clean outlines",
        _GAME_NEG,
    ),
    _s(
        "Retro Arcade",
        "{prompt}, 1980s arcade game, CRT glow, neon sprites, scanlines",
        "modern, realistic, photograph",
    ),
    _s(
        "Retro Game",
        "{prompt}, 8-bit retro video game scene, chunky pixels, limited palette",
        "smooth, realistic, photograph",
    ),
    _s(
        "RPG Fantasy Game",
        "{prompt}, fantasy role-playing game art, heroic party, detailed armour, quest map feel",
        _GAME_NEG,
    ),
    _s(
        "Strategy Game",
        "{prompt}, strategy game, top-down battlefield, readable units, tabletop map",
        _GAME_NEG,
    ),
    _s(
        "Street Fighter",
        "{prompt}, arcade fighting game art, muscular stylised fighters, bold action lines",
        _GAME_NEG,
    ),
    _s(
        "Legend of Zelda",
        "{prompt}, adventure game art, cel-shaded hero in a vast green landscape",
        _GAME_NEG,
    ),
    _s(
        "Architectural",
        "{prompt}, architectural visualisation, clean lines, accurate perspective, golden hour",
        "cartoon, distorted, cluttered",
    ),
    _s(
        "Disco",
        "{prompt}, 1970s disco, mirror ball sparkle, glitter, warm coloured spotlights",
        "muted, modern, dull",
    ),
    _s(
        "Dreamscape",
        "{prompt}, dreamscape, soft glowing haze, floating elements, pastel sky",
        "harsh, gritty, mundane",
    ),
    _s(
        "Dystopian",
        "{prompt}, dystopian, decaying megastructures, smog, oppressive atmosphere",
        "cheerful, bright, clean",
    ),
    _s(
        "Fairy Tale",
        "{prompt}, storybook fairy tale illustration, whimsical, warm glowing light",
        "gritty, photograph, horror",
    ),
    _s(
        "Gothic",
        "{prompt}, gothic, dark cathedral architecture, candlelight, ornate details",
        "bright, cheerful, modern",
    ),
    _s(
        "Grunge",
        "{prompt}, grunge aesthetic, distressed textures, dirty film look, muted colours",
        "clean, glossy, bright",
    ),
    _s(
        "Horror",
        "{prompt}, horror scene, eerie shadows, unsettling atmosphere, cold light",
        "cheerful, bright, cute",
    ),
    _s(
        "Minimalist",
        "{prompt}, minimalist composition, lots of negative space, few elements, calm palette",
        "cluttered, busy, detailed background",
    ),
    _s(
        "Monochrome",
        "{prompt}, monochrome, black and white, strong tonal contrast",
        "colour, saturated",
    ),
    _s(
        "Nautical",
        "{prompt}, nautical theme, ships, rope and brass, sea spray, maritime blues",
        "desert, urban, dry",
    ),
    _s(
        "Space",
        "{prompt}, outer space, nebulae, distant stars, cosmic scale",
        "earth landscape, daylight, indoors",
    ),
    _s(
        "Stained Glass",
        "{prompt}, stained glass window, leaded outlines, glowing coloured glass",
        "photograph, soft gradients",
    ),
    _s(
        "Techwear Fashion",
        "{prompt}, techwear fashion shoot, functional black garments, "
        "straps and buckles, urban backdrop",
        "casual, vintage, cartoon",
    ),
    _s(
        "Tribal",
        "{prompt}, tribal art motifs, bold symmetrical patterns, earthy pigments",
        "photograph, modern, neon",
    ),
    _s(
        "Zentangle",
        "{prompt}, zentangle drawing, intricate repeating ink patterns, black and white",
        "colour, photograph, blurry",
    ),
    _s(
        "Collage",
        "{prompt}, mixed-media collage, cut-out photographs and paper scraps, layered",
        "seamless, single photograph, clean",
    ),
    _s(
        "Flat Papercut",
        "{prompt}, flat papercut illustration, simple cut shapes, solid colours",
        _PAPER_NEG,
    ),
    _s("Kirigami", "{prompt}, kirigami, cut and folded paper, pop-up structure", _PAPER_NEG),
    _s(
        "Paper Mache",
        "{prompt}, papier-mache sculpture, torn paper texture, painted surface",
        _PAPER_NEG,
    ),
    _s(
        "Paper Quilling",
        "{prompt}, paper quilling, coiled paper strips, intricate spirals",
        _PAPER_NEG,
    ),
    _s("Papercut Collage", "{prompt}, papercut collage, layered coloured paper shapes", _PAPER_NEG),
    _s(
        "Papercut Shadow Box",
        "{prompt}, papercut shadow box, backlit layered paper depth",
        _PAPER_NEG,
    ),
    _s(
        "Stacked Papercut",
        "{prompt}, stacked papercut, many layers of paper creating depth",
        _PAPER_NEG,
    ),
    _s(
        "Thick Layered Papercut",
        "{prompt}, thick layered papercut, deep cardboard layers, strong shadows",
        _PAPER_NEG,
    ),
    _s(
        "Alien",
        "{prompt}, alien world, bioluminescent flora, strange otherworldly forms",
        "ordinary, earthly, mundane",
    ),
    _s(
        "Film Noir",
        "{prompt}, film noir, black and white, hard shadows, venetian blind light, 1940s",
        "colour, bright, cheerful",
    ),
    _s(
        "HDR",
        "{prompt}, HDR photograph, wide dynamic range, vivid detail in shadows and highlights",
        "flat, washed out, low contrast",
    ),
    _s(
        "Long Exposure",
        "{prompt}, long exposure photograph, light trails, silky motion blur",
        "frozen motion, flat, cartoon",
    ),
    _s(
        "Neon Noir",
        "{prompt}, neon noir, dark rainy night, neon reflections, moody detective atmosphere",
        "daylight, cheerful, flat",
    ),
    _s(
        "Silhouette",
        "{prompt}, silhouette against a bright sky, strong backlight, simple shapes",
        "front lit, detailed faces, flat light",
    ),
    _s(
        "Tilt-Shift",
        "{prompt}, tilt-shift photograph, miniature effect, selective focus band",
        "everything in focus, cartoon",
    ),
)

STYLE_NAMES: tuple[str, ...] = tuple(style.name for style in STYLES)
_BY_NAME = {style.name: style for style in STYLES}


def apply_style(name: str, prompt: str, negative_prompt: str | None) -> tuple[str, str] | None:
    """The styled (prompt, negative prompt), or None when `name` is not a style."""
    style = _BY_NAME.get(name)
    return style.apply(prompt, negative_prompt) if style else None
