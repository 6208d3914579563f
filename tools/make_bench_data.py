"""edgeroute's own task families (deterministic, seed 20261122), part of the corpus ``tools/make_corpus.py`` builds
into ``edgeroute/bench/data/items.jsonl``.

Families whose answers can be computed are generated (arithmetic, unit conversions, calendar, logic, letters,
sequences); the factual ones are curated by hand below (capitals, element symbols, authors, antonyms, multiple-choice
science). Every item: ``id``, ``family``, ``question``, ``answers`` (accepted strings, first = canonical), ``split``, and for
multiple choice ``choices`` (the options, in letter order).
The corpus re-splits every item (``make_corpus.split_of``) and leaves out the ``EXTRA_TRAIN`` items; ``build()``
still makes them on request (``extra=True``: further items of the generated families, ids ``family-xNNNN``).

    python tools/make_bench_data.py            # runs make_corpus.py (rewrites items.jsonl, prints the sizes)
"""

from __future__ import annotations

import calendar
import hashlib
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "edgeroute" / "bench" / "data" / "items.jsonl"
SEED = 20261122
HELDOUT_FAMILIES = ("authors", "science-mc")
#: Extra training items for the generated families (more data for the probes), drawn with other seeds and kept
#: only when their question appears nowhere else in the set; they are all in ``train``.
EXTRA_TRAIN = {"arithmetic": 600, "units": 400, "logic": 400, "sequences": 400, "letters": 150, "calendar": 150}

NUMBER_ONLY = "Answer with the number only."

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Canada": "Ottawa",
    "Australia": "Canberra", "Brazil": "Brasilia|Brasília", "Argentina": "Buenos Aires", "Mexico": "Mexico City",
    "India": "New Delhi|Delhi", "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Greece": "Athens", "Turkey": "Ankara", "Ireland": "Dublin",
    "Austria": "Vienna", "Hungary": "Budapest", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota|Bogotá",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta", "Nigeria": "Abuja", "Morocco": "Rabat",
    "Switzerland": "Bern|Berne", "Belgium": "Brussels", "Netherlands": "Amsterdam", "Czech Republic": "Prague",
    "South Korea": "Seoul", "Iran": "Tehran", "Iraq": "Baghdad", "Cuba": "Havana", "Ukraine": "Kyiv|Kiev",
    "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb", "Iceland": "Reykjavik",
    "New Zealand": "Wellington", "Pakistan": "Islamabad", "Bangladesh": "Dhaka", "Ethiopia": "Addis Ababa",
    "Ghana": "Accra", "Venezuela": "Caracas", "Philippines": "Manila", "Malaysia": "Kuala Lumpur",
    "United Kingdom": "London", "United States": "Washington|Washington, D.C.|Washington D.C.",
    "Saudi Arabia": "Riyadh", "Syria": "Damascus", "Lebanon": "Beirut", "Jordan": "Amman", "Israel": "Jerusalem",
    "Afghanistan": "Kabul", "Nepal": "Kathmandu", "Sri Lanka": "Colombo|Sri Jayawardenepura Kotte",
    "Mongolia": "Ulaanbaatar|Ulan Bator", "North Korea": "Pyongyang", "Taiwan": "Taipei", "Singapore": "Singapore",
    "Cambodia": "Phnom Penh", "Laos": "Vientiane", "Myanmar": "Naypyidaw|Nay Pyi Taw", "Qatar": "Doha",
    "Kuwait": "Kuwait City", "Oman": "Muscat", "Yemen": "Sanaa|Sana'a", "United Arab Emirates": "Abu Dhabi",
    "Kazakhstan": "Astana", "Uzbekistan": "Tashkent", "Georgia": "Tbilisi", "Armenia": "Yerevan",
    "Azerbaijan": "Baku", "Belarus": "Minsk", "Lithuania": "Vilnius", "Latvia": "Riga", "Estonia": "Tallinn",
    "Slovakia": "Bratislava", "Slovenia": "Ljubljana", "Albania": "Tirana", "North Macedonia": "Skopje",
    "Montenegro": "Podgorica", "Bosnia and Herzegovina": "Sarajevo", "Moldova": "Chisinau|Chișinău",
    "Luxembourg": "Luxembourg", "Malta": "Valletta", "Cyprus": "Nicosia", "Algeria": "Algiers", "Tunisia": "Tunis",
    "Libya": "Tripoli", "Sudan": "Khartoum", "Senegal": "Dakar", "Mali": "Bamako", "Niger": "Niamey",
    "Chad": "N'Djamena|Ndjamena", "Cameroon": "Yaounde|Yaoundé", "Angola": "Luanda", "Zambia": "Lusaka",
    "Zimbabwe": "Harare", "Mozambique": "Maputo", "Madagascar": "Antananarivo", "Uganda": "Kampala",
    "Tanzania": "Dodoma", "Rwanda": "Kigali", "Somalia": "Mogadishu", "Namibia": "Windhoek",
    "Botswana": "Gaborone", "Ecuador": "Quito", "Bolivia": "Sucre|La Paz", "Paraguay": "Asuncion|Asunción",
    "Uruguay": "Montevideo", "Panama": "Panama City", "Costa Rica": "San Jose|San José", "Jamaica": "Kingston",
    "Guatemala": "Guatemala City", "Honduras": "Tegucigalpa", "Nicaragua": "Managua", "El Salvador": "San Salvador",
    "Haiti": "Port-au-Prince", "Dominican Republic": "Santo Domingo", "Fiji": "Suva",
    "Papua New Guinea": "Port Moresby",
}

ELEMENTS = {
    "hydrogen": "H", "helium": "He", "lithium": "Li", "beryllium": "Be", "boron": "B", "carbon": "C",
    "nitrogen": "N", "oxygen": "O", "fluorine": "F", "neon": "Ne", "sodium": "Na", "magnesium": "Mg",
    "aluminium": "Al", "silicon": "Si", "phosphorus": "P", "sulfur": "S", "chlorine": "Cl", "argon": "Ar",
    "potassium": "K", "calcium": "Ca", "titanium": "Ti", "chromium": "Cr", "manganese": "Mn", "iron": "Fe",
    "cobalt": "Co", "nickel": "Ni", "copper": "Cu", "zinc": "Zn", "arsenic": "As", "bromine": "Br",
    "krypton": "Kr", "silver": "Ag", "tin": "Sn", "iodine": "I", "xenon": "Xe", "tungsten": "W",
    "platinum": "Pt", "gold": "Au", "mercury": "Hg", "lead": "Pb", "radon": "Rn", "radium": "Ra",
    "uranium": "U", "plutonium": "Pu", "barium": "Ba", "cesium": "Cs", "strontium": "Sr", "selenium": "Se",
    "gallium": "Ga", "germanium": "Ge", "bismuth": "Bi", "antimony": "Sb", "cadmium": "Cd", "palladium": "Pd",
}

AUTHORS = {
    "Romeo and Juliet": "William Shakespeare|Shakespeare", "Hamlet": "William Shakespeare|Shakespeare",
    "Macbeth": "William Shakespeare|Shakespeare", "Pride and Prejudice": "Jane Austen|Austen",
    "Emma": "Jane Austen|Austen", "1984": "George Orwell|Orwell", "Animal Farm": "George Orwell|Orwell",
    "War and Peace": "Leo Tolstoy|Tolstoy", "Anna Karenina": "Leo Tolstoy|Tolstoy",
    "Crime and Punishment": "Fyodor Dostoevsky|Dostoevsky|Dostoyevsky",
    "The Brothers Karamazov": "Fyodor Dostoevsky|Dostoevsky|Dostoyevsky", "Don Quixote": "Miguel de Cervantes|Cervantes",
    "Moby-Dick": "Herman Melville|Melville", "The Great Gatsby": "F. Scott Fitzgerald|Fitzgerald",
    "To Kill a Mockingbird": "Harper Lee", "The Catcher in the Rye": "J. D. Salinger|J.D. Salinger|Salinger",
    "Great Expectations": "Charles Dickens|Dickens", "Oliver Twist": "Charles Dickens|Dickens",
    "A Tale of Two Cities": "Charles Dickens|Dickens", "Frankenstein": "Mary Shelley",
    "Dracula": "Bram Stoker|Stoker", "Jane Eyre": "Charlotte Bronte|Charlotte Brontë",
    "Wuthering Heights": "Emily Bronte|Emily Brontë", "The Odyssey": "Homer", "The Iliad": "Homer",
    "The Divine Comedy": "Dante Alighieri|Dante", "Les Miserables": "Victor Hugo|Hugo",
    "The Hunchback of Notre-Dame": "Victor Hugo|Hugo", "Madame Bovary": "Gustave Flaubert|Flaubert",
    "The Old Man and the Sea": "Ernest Hemingway|Hemingway", "A Farewell to Arms": "Ernest Hemingway|Hemingway",
    "The Adventures of Tom Sawyer": "Mark Twain|Twain", "Adventures of Huckleberry Finn": "Mark Twain|Twain",
    "Alice's Adventures in Wonderland": "Lewis Carroll|Carroll", "The Hobbit": "J. R. R. Tolkien|J.R.R. Tolkien|Tolkien",
    "The Lord of the Rings": "J. R. R. Tolkien|J.R.R. Tolkien|Tolkien",
    "Harry Potter and the Philosopher's Stone": "J. K. Rowling|J.K. Rowling|Rowling",
    "The Origin of Species": "Charles Darwin|Darwin", "One Hundred Years of Solitude": "Gabriel Garcia Marquez|Gabriel García Márquez|Marquez|Márquez",
    "The Metamorphosis": "Franz Kafka|Kafka", "The Trial": "Franz Kafka|Kafka",
    "Brave New World": "Aldous Huxley|Huxley", "Fahrenheit 451": "Ray Bradbury|Bradbury",
    "Of Mice and Men": "John Steinbeck|Steinbeck", "The Grapes of Wrath": "John Steinbeck|Steinbeck",
    "Lord of the Flies": "William Golding|Golding", "The Little Prince": "Antoine de Saint-Exupery|Antoine de Saint-Exupéry|Saint-Exupery|Saint-Exupéry",
    "Treasure Island": "Robert Louis Stevenson|Stevenson", "The Jungle Book": "Rudyard Kipling|Kipling",
    "Sherlock Holmes stories": "Arthur Conan Doyle|Conan Doyle", "Murder on the Orient Express": "Agatha Christie|Christie",
    "The Time Machine": "H. G. Wells|H.G. Wells|Wells", "The War of the Worlds": "H. G. Wells|H.G. Wells|Wells",
    "Twenty Thousand Leagues Under the Seas": "Jules Verne|Verne", "Around the World in Eighty Days": "Jules Verne|Verne",
    "Faust": "Johann Wolfgang von Goethe|Goethe", "The Canterbury Tales": "Geoffrey Chaucer|Chaucer",
    "Paradise Lost": "John Milton|Milton", "Gulliver's Travels": "Jonathan Swift|Swift",
    "Robinson Crusoe": "Daniel Defoe|Defoe", "The Picture of Dorian Gray": "Oscar Wilde|Wilde",
}

ANTONYMS = {
    "hot": "cold", "big": "small|little", "tall": "short", "fast": "slow", "happy": "sad|unhappy",
    "light": "dark|heavy", "open": "closed|shut", "up": "down", "left": "right", "early": "late",
    "old": "new|young", "rich": "poor", "strong": "weak", "hard": "soft|easy", "wet": "dry", "full": "empty",
    "high": "low", "loud": "quiet|soft", "clean": "dirty", "day": "night", "good": "bad|evil", "true": "false",
    "win": "lose", "buy": "sell", "push": "pull", "begin": "end|finish", "above": "below|beneath",
    "inside": "outside", "before": "after", "thick": "thin", "wide": "narrow", "deep": "shallow",
    "sweet": "sour|bitter", "cheap": "expensive|dear", "safe": "dangerous|unsafe", "alive": "dead",
    "arrive": "depart|leave", "accept": "reject|refuse|decline", "ancient": "modern", "brave": "cowardly|afraid",
    "friend": "enemy|foe", "love": "hate", "near": "far", "north": "south", "east": "west", "first": "last",
    "heavy": "light", "increase": "decrease", "maximum": "minimum", "question": "answer", "remember": "forget",
    "success": "failure", "always": "never", "everything": "nothing", "forward": "backward|backwards",
    "asleep": "awake", "entrance": "exit", "import": "export", "multiply": "divide", "positive": "negative",
    "visible": "invisible", "polite": "rude|impolite", "noisy": "quiet|silent", "rough": "smooth",
    "sharp": "blunt|dull", "tight": "loose", "borrow": "lend", "give": "take|receive", "laugh": "cry",
    "morning": "evening", "summer": "winter", "boy": "girl", "king": "queen", "father": "mother",
    "more": "less|fewer", "add": "subtract|remove", "minus": "plus", "odd": "even", "wrong": "right|correct",
    "beginning": "end|ending", "birth": "death", "sunrise": "sunset", "import tax": "export tax",
}

SCIENCE_MC = [
    ("Which planet is closest to the Sun?", ["Venus", "Mercury", "Earth", "Mars"], 1),
    ("What gas do plants absorb from the air for photosynthesis?", ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], 2),
    ("What is the boiling point of water at sea level in degrees Celsius?", ["90", "100", "110", "120"], 1),
    ("Which organ pumps blood through the human body?", ["Lungs", "Liver", "Heart", "Kidneys"], 2),
    ("What is the largest planet in the Solar System?", ["Jupiter", "Saturn", "Neptune", "Earth"], 0),
    ("What force keeps the planets in orbit around the Sun?", ["Magnetism", "Friction", "Gravity", "Electricity"], 2),
    ("Which of these is a mammal?", ["Shark", "Dolphin", "Trout", "Octopus"], 1),
    ("What is H2O commonly called?", ["Salt", "Water", "Hydrogen peroxide", "Ammonia"], 1),
    ("How many legs does an insect have?", ["Four", "Six", "Eight", "Ten"], 1),
    ("What part of the cell contains the genetic material in plants and animals?", ["Nucleus", "Cell wall", "Ribosome", "Vacuole"], 0),
    ("Which gas makes up most of Earth's atmosphere?", ["Oxygen", "Carbon dioxide", "Nitrogen", "Argon"], 2),
    ("What is the center of an atom called?", ["Electron", "Nucleus", "Shell", "Orbit"], 1),
    ("Which planet is known as the Red Planet?", ["Venus", "Jupiter", "Mars", "Saturn"], 2),
    ("What do bees collect from flowers to make honey?", ["Pollen", "Nectar", "Sap", "Seeds"], 1),
    ("What is the hardest natural substance?", ["Gold", "Iron", "Diamond", "Quartz"], 2),
    ("Which blood cells carry oxygen?", ["White blood cells", "Red blood cells", "Platelets", "Plasma"], 1),
    ("What type of energy does a moving car have?", ["Kinetic energy", "Chemical energy", "Nuclear energy", "Sound energy"], 0),
    ("Which of these is a renewable energy source?", ["Coal", "Oil", "Natural gas", "Wind"], 3),
    ("At what temperature in Celsius does water freeze?", ["0", "10", "-10", "32"], 0),
    ("What is the closest star to Earth?", ["Sirius", "The Sun", "Polaris", "Alpha Centauri"], 1),
    ("Which organ do humans use to breathe?", ["Stomach", "Lungs", "Heart", "Brain"], 1),
    ("What is the chemical symbol for gold?", ["Ag", "Au", "Gd", "Go"], 1),
    ("How many planets are in the Solar System?", ["Seven", "Eight", "Nine", "Ten"], 1),
    ("What do caterpillars turn into?", ["Beetles", "Butterflies", "Spiders", "Worms"], 1),
    ("Which instrument measures temperature?", ["Barometer", "Thermometer", "Speedometer", "Ruler"], 1),
    ("What is the main source of energy for Earth?", ["The Moon", "The Sun", "Volcanoes", "The wind"], 1),
    ("Which of these animals is a reptile?", ["Frog", "Snake", "Salmon", "Whale"], 1),
    ("What is the process of water turning into vapour called?", ["Condensation", "Evaporation", "Freezing", "Melting"], 1),
    ("What is the largest organ of the human body?", ["Liver", "Brain", "Skin", "Heart"], 2),
    ("Which metal is liquid at room temperature?", ["Iron", "Mercury", "Aluminium", "Copper"], 1),
    ("What is the speed of light closest to?", ["300 km/s", "300,000 km/s", "3,000 km/s", "30 km/s"], 1),
    ("Which part of a plant absorbs water from the soil?", ["Leaves", "Flowers", "Roots", "Stem"], 2),
    ("What is the natural satellite of Earth called?", ["The Sun", "The Moon", "Mars", "Venus"], 1),
    ("Which of these is a conductor of electricity?", ["Rubber", "Wood", "Copper", "Plastic"], 2),
    ("How many bones are in the adult human body?", ["106", "206", "306", "406"], 1),
    ("What gas do humans exhale that plants use?", ["Oxygen", "Carbon dioxide", "Hydrogen", "Helium"], 1),
    ("What is the unit of electrical resistance?", ["Volt", "Ampere", "Ohm", "Watt"], 2),
    ("Which layer of the Earth is the outermost?", ["Core", "Mantle", "Crust", "Magma"], 2),
    ("What do you call an animal that eats only plants?", ["Carnivore", "Herbivore", "Omnivore", "Predator"], 1),
    ("Which planet has the most famous ring system?", ["Mars", "Saturn", "Mercury", "Venus"], 1),
    ("What is the pH of pure water?", ["1", "7", "10", "14"], 1),
    ("Which vitamin does the skin make in sunlight?", ["Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin D"], 3),
    ("What is the smallest unit of life?", ["Atom", "Cell", "Organ", "Tissue"], 1),
    ("What kind of rock forms from cooled lava?", ["Sedimentary", "Metamorphic", "Igneous", "Limestone"], 2),
    ("What is the freezing point of water in Fahrenheit?", ["0", "32", "100", "212"], 1),
    ("Which simple machine is a seesaw?", ["Pulley", "Lever", "Wedge", "Screw"], 1),
    ("Which sense organ detects sound?", ["Eye", "Ear", "Nose", "Tongue"], 1),
    ("What is the chemical formula of table salt?", ["NaCl", "KCl", "H2O", "CO2"], 0),
    ("Which planet is farthest from the Sun?", ["Uranus", "Neptune", "Saturn", "Jupiter"], 1),
    ("What is frozen water called?", ["Steam", "Ice", "Fog", "Dew"], 1),
    ("Which part of the body contains the retina?", ["Ear", "Eye", "Skin", "Heart"], 1),
    ("What do we call the path of a planet around the Sun?", ["Orbit", "Axis", "Equator", "Pole"], 0),
    ("Which particle has a negative electric charge?", ["Proton", "Neutron", "Electron", "Photon"], 2),
    ("What are animals without a backbone called?", ["Vertebrates", "Invertebrates", "Mammals", "Amphibians"], 1),
    ("How long does Earth take to orbit the Sun?", ["One day", "One month", "One year", "One week"], 2),
    ("What is the main gas in the Sun?", ["Oxygen", "Hydrogen", "Carbon", "Nitrogen"], 1),
    ("Which organ filters blood to make urine?", ["Kidneys", "Lungs", "Heart", "Stomach"], 0),
    ("What do you call a scientist who studies rocks?", ["Biologist", "Geologist", "Astronomer", "Chemist"], 1),
    ("Which colour of visible light has the longest wavelength?", ["Blue", "Green", "Red", "Violet"], 2),
    ("What is the unit of power?", ["Joule", "Watt", "Newton", "Volt"], 1),
]

WORDS = [
    "apple", "banana", "cherry", "orange", "grape", "lemon", "melon", "peach", "river", "mountain", "ocean",
    "forest", "garden", "window", "table", "chair", "pencil", "paper", "school", "teacher", "doctor", "planet",
    "rocket", "summer", "winter", "spring", "autumn", "yellow", "purple", "silver", "bridge", "castle", "dragon",
    "island", "jacket", "kitchen", "ladder", "mirror", "needle", "pocket", "rabbit", "turtle", "violin", "wallet",
    "zebra", "anchor", "basket", "candle", "dinner", "engine", "finger", "guitar", "hammer", "insect", "jungle",
    "kettle", "lizard", "monkey", "number", "office", "parrot", "quartz", "rubber", "sunset", "tomato", "umbrella",
    "valley", "walnut", "yogurt", "bottle", "button", "cactus", "desert", "feather", "giraffe", "harbor", "igloo",
    "jigsaw", "koala", "lantern", "magnet", "nectar", "oyster", "pepper", "quilt", "rainbow", "saddle", "tunnel",
    "unicorn", "volcano", "whistle", "cookie", "bread", "cloud", "horse", "house", "light", "music", "night",
    "plant", "queen", "stone", "tiger", "water", "world", "friend", "family", "market", "season", "letter",
    "circle", "square", "bicycle", "airport", "library", "machine", "picture", "station", "blanket", "sandwich",
]

WEEKDAYS = list(calendar.day_name)  # Monday .. Sunday
MONTHS = list(calendar.month_name)[1:]
WORD_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve"]


def split_of(question: str, family: str) -> str:
    """By a hash of the question text, so a question that occurs twice is always in one split."""
    if family in HELDOUT_FAMILIES:
        return "heldout-families"
    bucket = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 5 else "calibration" if bucket < 7 else "test"


def alts(spec: str) -> list[str]:
    return spec.split("|")


def arithmetic(rng: random.Random) -> list[tuple[str, list[str]]]:
    out = []
    levels = [  # (label, count, operand generator, operators)
        ("add1", 40, lambda: (rng.randint(1, 9), rng.randint(1, 9)), "+"),
        ("add2", 50, lambda: (rng.randint(10, 99), rng.randint(10, 99)), "+"),
        ("sub2", 50, lambda: sorted((rng.randint(10, 99), rng.randint(10, 99)), reverse=True), "-"),
        ("mul1", 40, lambda: (rng.randint(2, 9), rng.randint(2, 9)), "*"),
        ("mul2", 40, lambda: (rng.randint(11, 99), rng.randint(2, 9)), "*"),
        ("add3", 40, lambda: (rng.randint(100, 999), rng.randint(100, 999)), "+"),
        ("sub3", 40, lambda: sorted((rng.randint(100, 999), rng.randint(100, 999)), reverse=True), "-"),
    ]
    seen = set()
    for _, count, gen, op in levels:
        n = 0
        while n < count:
            a, b = gen()
            if (a, op, b) in seen:
                continue
            seen.add((a, op, b))
            value = a + b if op == "+" else a - b if op == "-" else a * b
            sym = "times" if op == "*" else "plus" if op == "+" else "minus"
            q = rng.choice([f"What is {a} {op} {b}?", f"What is {a} {sym} {b}?"])
            out.append((f"{q} {NUMBER_ONLY}", [str(value)]))
            n += 1
    return out


def units(rng: random.Random) -> list[tuple[str, list[str]]]:
    conv = [("kilometres", "metres", 1000), ("metres", "centimetres", 100), ("kilograms", "grams", 1000),
            ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
            ("litres", "millilitres", 1000), ("feet", "inches", 12), ("yards", "feet", 3), ("dozen", "items", 12),
            ("centimetres", "millimetres", 10), ("years", "months", 12)]
    out, seen = [], set()
    while len(out) < 200:
        big, small, factor = rng.choice(conv)
        n = rng.randint(2, 12) if factor >= 100 else rng.randint(2, 20)
        if (big, n) in seen:
            continue
        seen.add((big, n))
        if big == "dozen":
            q = f"How many items are in {n} dozen?"
        elif rng.random() < 0.3:  # the reverse direction, with a whole answer
            q = f"How many {big} are {n * factor} {small}?"
            out.append((f"{q} {NUMBER_ONLY}", [str(n)]))
            continue
        else:
            q = f"How many {small} are in {n} {big}?"
        out.append((f"{q} {NUMBER_ONLY}", [str(n * factor)]))
    return out


def calendar_items(rng: random.Random) -> list[tuple[str, list[str]]]:
    out = []
    for m, name in enumerate(MONTHS, start=1):
        if name != "February":
            out.append((f"How many days are there in {name}? {NUMBER_ONLY}", [str(calendar.monthrange(2023, m)[1])]))
        out.append((f"Which month comes after {name}?", [MONTHS[m % 12]]))
        out.append((f"Which month comes before {name}?", [MONTHS[(m - 2) % 12]]))
        out.append((f"What number is the month of {name} in the year (January is 1)? {NUMBER_ONLY}", [str(m)]))
    for i, day in enumerate(WEEKDAYS):
        out.append((f"Which day of the week comes after {day}?", [WEEKDAYS[(i + 1) % 7]]))
        out.append((f"Which day of the week comes before {day}?", [WEEKDAYS[(i - 1) % 7]]))
        for k in (2, 3):
            out.append((f"If today is {day}, what day will it be in {k} days?", [WEEKDAYS[(i + k) % 7]]))
    for year in rng.sample(range(1901, 2100), 40):
        leap = "yes" if calendar.isleap(year) else "no"
        out.append((f"Is {year} a leap year? Answer yes or no.", [leap]))
    for year in rng.sample(range(1950, 2030), 20):
        out.append((f"How many days are in February {year}? {NUMBER_ONLY}", ["29" if calendar.isleap(year) else "28"]))
    out += [
        (f"How many days are in a week? {NUMBER_ONLY}", ["7"]), (f"How many months are in a year? {NUMBER_ONLY}", ["12"]),
        (f"How many days are in a common (non-leap) year? {NUMBER_ONLY}", ["365"]),
        (f"How many days are in a leap year? {NUMBER_ONLY}", ["366"]), (f"How many hours are in a day? {NUMBER_ONLY}", ["24"]),
        (f"How many weeks are in a year, rounded down? {NUMBER_ONLY}", ["52"]),
    ]
    return out


def logic(rng: random.Random) -> list[tuple[str, list[str]]]:
    out, seen = [], set()
    while len(out) < 80:
        a, b = rng.sample(range(1, 200), 2)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        if rng.random() < 0.5:
            out.append((f"Which is larger, {a} or {b}? {NUMBER_ONLY}", [str(max(a, b))]))
        else:
            out.append((f"Which is smaller, {a} or {b}? {NUMBER_ONLY}", [str(min(a, b))]))
    for n in rng.sample(range(1, 500), 50):
        out.append((f"Is {n} an even or an odd number? Answer even or odd.", ["even" if n % 2 == 0 else "odd"]))
    for _ in range(40):
        a, b = rng.sample(range(1, 100), 2)
        truth = a > b
        out.append((f"Is {a} greater than {b}? Answer yes or no.", ["yes" if truth else "no"]))
    names = ["Anna", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Hugo", "Ivy", "Jack"]
    for _ in range(30):
        x, y, z = rng.sample(names, 3)
        out.append((f"{x} is taller than {y}. {y} is taller than {z}. Who is the tallest? Answer with the name only.", [x]))
    return out


def letters(rng: random.Random) -> list[tuple[str, list[str]]]:
    out = []
    words = rng.sample(WORDS, len(WORDS))
    for w in words[:60]:
        out.append((f"What is the first letter of the word '{w}'? Answer with the letter only.", [w[0]]))
    for w in words[60:]:
        out.append((f"What is the last letter of the word '{w}'? Answer with the letter only.", [w[-1]]))
    for w in rng.sample(WORDS, 60):
        out.append((f"How many letters are in the word '{w}'? {NUMBER_ONLY}", [str(len(w))]))
    return out


def sequences(rng: random.Random) -> list[tuple[str, list[str]]]:
    out = []
    for n in rng.sample(range(5, 999), 40):
        out.append((f"What number comes right after {n}? {NUMBER_ONLY}", [str(n + 1)]))
    for n in rng.sample(range(5, 999), 30):
        out.append((f"What number comes right before {n}? {NUMBER_ONLY}", [str(n - 1)]))
    for _ in range(50):
        start, step = rng.randint(1, 30), rng.choice([2, 3, 5, 10])
        seq = [start + i * step for i in range(4)]
        out.append((f"What is the next number in the sequence {', '.join(map(str, seq))}? {NUMBER_ONLY}",
                    [str(start + 4 * step)]))
    for n in range(0, 13):
        out.append((f"Write the number {WORD_NUMBERS[n]} in digits. {NUMBER_ONLY}", [str(n)]))
    return out


def build(extra: bool = True) -> list[dict[str, object]]:
    """The edgeroute families' items; ``extra=False`` leaves out the ``EXTRA_TRAIN`` items."""
    rng = random.Random(SEED)
    families: dict[str, list[tuple[str, list[str]]]] = {
        "arithmetic": arithmetic(rng),
        "capitals": [(f"What is the capital of {c}? Answer with the city name only.", alts(a)) for c, a in CAPITALS.items()],
        "elements": [(f"What is the chemical symbol of {e}? Answer with the symbol only.", [s]) for e, s in ELEMENTS.items()]
        + [(f"Which chemical element has the symbol {s}? Answer with the element name only.", [e] + (["aluminum"] if e == "aluminium" else []) + (["sulphur"] if e == "sulfur" else []) + (["caesium"] if e == "cesium" else []))
           for e, s in list(ELEMENTS.items())[:30]],
        "units": units(rng),
        "calendar": calendar_items(rng),
        "logic": logic(rng),
        "letters": letters(rng),
        "sequences": sequences(rng),
        "antonyms": [(f"What is the opposite of '{w}'? Answer with one word.", alts(a)) for w, a in ANTONYMS.items()
                     if " " not in w],
        "authors": [(f"Who wrote '{work}'? Answer with the author's name only.", alts(a)) for work, a in AUTHORS.items()],
        "science-mc": [
            (q + " " + " ".join(f"({'ABCD'[i]}) {c}" for i, c in enumerate(choices)) + " Answer with the letter.",
             ["ABCD"[k], choices[k], f"({'ABCD'[k]})"])
            for q, choices, k in SCIENCE_MC
        ],
    }
    generators = {"arithmetic": arithmetic, "units": units, "logic": logic, "sequences": sequences,
                  "letters": letters, "calendar": calendar_items}
    seen = {q for pairs in families.values() for q, _ in pairs}
    extra: dict[str, list[tuple[str, list[str]]]] = {}
    for family, quota in (EXTRA_TRAIN if extra else {}).items():
        got: list[tuple[str, list[str]]] = []
        for round_ in range(1, 200):
            for q, a in generators[family](random.Random(SEED + 1000 * round_)):
                # only questions whose hash puts them in train: never a look-alike of a test/calibration item
                if q not in seen and len(got) < quota and split_of(q, family) == "train":
                    seen.add(q)
                    got.append((q, a))
            if len(got) >= quota:
                break
        extra[family] = got
    items = []
    for family, pairs in families.items():
        for i, (question, answers) in enumerate(pairs):
            item_id = f"{family}-{i:04d}"
            item: dict[str, object] = {"id": item_id, "family": family, "question": question, "answers": answers,
                                       "split": split_of(question, family)}
            if family == "science-mc":
                item["choices"] = SCIENCE_MC[i][1]
            items.append(item)
    for family, pairs in extra.items():
        for i, (question, answers) in enumerate(pairs):
            items.append({"id": f"{family}-x{i:04d}", "family": family, "question": question, "answers": answers,
                          "split": "train"})
    return items


def main() -> int:
    """The corpus is built by ``make_corpus.py`` (these families and the public ones); this runs it."""
    import make_corpus

    return make_corpus.main()


if __name__ == "__main__":
    sys.exit(main())
