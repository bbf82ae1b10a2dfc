"""Word lists of the English normaliser (runtime/text/normalize.py): data only, no rules.

Every list is read by one rule of ``normalize_english``; the rule's docstring says how.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
MONTH_ABBREVIATIONS = {"jan": "January", "feb": "February", "mar": "March", "apr": "April",
                       "jun": "June", "jul": "July", "aug": "August", "sep": "September",
                       "sept": "September", "oct": "October", "nov": "November", "dec": "December"}

CURRENCY_SYMBOLS = {"$": "dollar", "£": "pound", "€": "euro", "¥": "yen", "₹": "rupee"}
"""Symbol -> key of ``CURRENCIES``."""
CURRENCY_PREFIXES = {"US": "US dollar", "A": "Australian dollar", "AU": "Australian dollar",
                     "C": "Canadian dollar", "CA": "Canadian dollar", "NZ": "New Zealand dollar",
                     "HK": "Hong Kong dollar", "S": "Singapore dollar"}
"""Letters before ``$`` (``US$5``) -> key of ``CURRENCIES``."""
CURRENCY_CODES = {"USD": "US dollar", "EUR": "euro", "GBP": "pound", "JPY": "yen", "CHF": "Swiss franc",
                  "CAD": "Canadian dollar", "AUD": "Australian dollar", "INR": "rupee", "CNY": "yuan"}
CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    # name: (one, many, one hundredth, many hundredths); no hundredths: read decimals with "point"
    "dollar": ("dollar", "dollars", "cent", "cents"),
    "US dollar": ("US dollar", "US dollars", "cent", "cents"),
    "Australian dollar": ("Australian dollar", "Australian dollars", "cent", "cents"),
    "Canadian dollar": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
    "New Zealand dollar": ("New Zealand dollar", "New Zealand dollars", "cent", "cents"),
    "Hong Kong dollar": ("Hong Kong dollar", "Hong Kong dollars", "cent", "cents"),
    "Singapore dollar": ("Singapore dollar", "Singapore dollars", "cent", "cents"),
    "pound": ("pound", "pounds", "penny", "pence"),
    "euro": ("euro", "euros", "cent", "cents"),
    "yen": ("yen", "yen", "", ""),
    "rupee": ("rupee", "rupees", "paisa", "paise"),
    "Swiss franc": ("Swiss franc", "Swiss francs", "centime", "centimes"),
    "yuan": ("yuan", "yuan", "", ""),
}
SCALE_WORDS = {"thousand": "thousand", "million": "million", "billion": "billion",
               "trillion": "trillion", "k": "thousand", "K": "thousand", "m": "million", "M": "million",
               "mn": "million", "MM": "million", "b": "billion", "B": "billion", "bn": "billion",
               "BN": "billion", "t": "trillion", "T": "trillion", "tn": "trillion"}
"""Scales after an amount of money (``$3B``, ``£5bn``, ``$10K``)."""
BARE_SCALES = {"M": "million", "k": "thousand", "bn": "billion", "mn": "million"}
"""Scales after a bare number (``5 M users``, ``80k``). Uppercase ``K`` stays a letter (``4K``),
lowercase ``m`` is metres, ``B`` and ``T`` are letters (``3B pencil``)."""

UNITS: dict[str, tuple[str, str]] = {
    # Case-sensitive: "m" metres but "M" million, "g" grams but "G" a letter (5G), "W" watts.
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "µm": ("micrometer", "micrometers"),
    "μm": ("micrometer", "micrometers"), "nm": ("nanometer", "nanometers"),
    "mi": ("mile", "miles"), "ft": ("foot", "feet"), "yd": ("yard", "yards"), "yds": ("yard", "yards"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "µg": ("microgram", "micrograms"), "μg": ("microgram", "micrograms"), "mcg": ("microgram", "micrograms"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "L": ("liter", "liters"), "l": ("liter", "liters"), "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"), "cl": ("centiliter", "centiliters"), "gal": ("gallon", "gallons"),
    "tbsp": ("tablespoon", "tablespoons"), "Tbsp": ("tablespoon", "tablespoons"),
    "tsp": ("teaspoon", "teaspoons"), "fl oz": ("fluid ounce", "fluid ounces"), "qt": ("quart", "quarts"),
    "ms": ("millisecond", "milliseconds"), "µs": ("microsecond", "microseconds"),
    "μs": ("microsecond", "microseconds"), "ns": ("nanosecond", "nanoseconds"),
    "s": ("second", "seconds"), "sec": ("second", "seconds"), "secs": ("second", "seconds"),
    "min": ("minute", "minutes"), "mins": ("minute", "minutes"), "h": ("hour", "hours"),
    "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "mph": ("mile per hour", "miles per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"), "PB": ("petabyte", "petabytes"),
    "KiB": ("kibibyte", "kibibytes"), "MiB": ("mebibyte", "mebibytes"), "GiB": ("gibibyte", "gibibytes"),
    "TiB": ("tebibyte", "tebibytes"), "Mb": ("megabit", "megabits"), "Gb": ("gigabit", "gigabits"),
    "kbps": ("kilobit per second", "kilobits per second"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "KHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"), "MW": ("megawatt", "megawatts"),
    "GW": ("gigawatt", "gigawatts"), "Wh": ("watt hour", "watt hours"),
    "kWh": ("kilowatt hour", "kilowatt hours"), "MWh": ("megawatt hour", "megawatt hours"),
    "V": ("volt", "volts"), "kV": ("kilovolt", "kilovolts"), "mV": ("millivolt", "millivolts"),
    "mA": ("milliamp", "milliamps"), "mAh": ("milliamp hour", "milliamp hours"),
    "cal": ("calorie", "calories"), "kcal": ("kilocalorie", "kilocalories"),
    "psi": ("pound per square inch", "pounds per square inch"), "Pa": ("pascal", "pascals"),
    "kPa": ("kilopascal", "kilopascals"), "hPa": ("hectopascal", "hectopascals"),
    "dB": ("decibel", "decibels"), "px": ("pixel", "pixels"), "fps": ("frame per second", "frames per second"),
    "bpm": ("beat per minute", "beats per minute"),
    "°C": ("degree Celsius", "degrees Celsius"), "ºC": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"), "ºF": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "m²": ("square meter", "square meters"), "km²": ("square kilometer", "square kilometers"),
    "cm²": ("square centimeter", "square centimeters"), "ft²": ("square foot", "square feet"),
    "sq ft": ("square foot", "square feet"), "m³": ("cubic meter", "cubic meters"),
    "cm³": ("cubic centimeter", "cubic centimeters"),
}
PER_UNITS = {"h": "hour", "hr": "hour", "s": "second", "sec": "second", "min": "minute",
             "m": "meter", "km": "kilometer", "kg": "kilogram", "g": "gram", "L": "liter", "l": "liter",
             "ms": "millisecond", "day": "day", "d": "day", "m²": "square meter", "ft": "foot"}
"""Units after a slash (``km/h``, ``m/s``): read "per" and the singular."""
COMPASS = {"N": "North", "S": "South", "E": "East", "W": "West", "NE": "Northeast",
           "NW": "Northwest", "SE": "Southeast", "SW": "Southwest"}
"""A compass letter between a house number and a street name (``10 W Main Street``)."""
ADJECTIVE_STOPWORDS = _words(
    "of and or to in per each for a an the more less than is was are were on at by with from "
    "into over under between")
"""After ``a $5``/``a 60 W``, a following word outside this list is the noun the amount
describes, so the unit is read in the singular (``a five dollar fee``)."""

TITLES = {"dr": "Doctor", "mr": "Mister", "mrs": "Missus", "ms": "Miz", "prof": "Professor",
          "mt": "Mount", "st": "Saint", "capt": "Captain", "col": "Colonel", "gen": "General",
          "gov": "Governor", "lt": "Lieutenant", "sgt": "Sergeant", "rev": "Reverend",
          "sen": "Senator", "rep": "Representative", "fr": "Father", "hon": "Honorable",
          "pres": "President", "supt": "Superintendent", "cpl": "Corporal", "adm": "Admiral",
          "maj": "Major"}
"""Titles before a name. dr, mr, mrs, ms, prof, mt and st expand wherever they stand with a
full stop (and without one before a capital); the others only before a capitalised word."""
UNCONDITIONAL_TITLES = frozenset({"dr", "mr", "mrs", "ms", "prof", "mt", "st"})
STREET_TYPES = {"st": "Street", "dr": "Drive", "ave": "Avenue", "blvd": "Boulevard", "rd": "Road",
                "ln": "Lane", "hwy": "Highway", "pkwy": "Parkway", "ct": "Court", "sq": "Square"}
"""Street types after a street name (``Main St.``, ``Fifth Ave.``)."""
TRAILING_ABBREVIATIONS = {"jr": "Junior", "sr": "Senior", "inc": "Incorporated", "ltd": "Limited",
                          "corp": "Corporation", "bros": "Brothers", "etc": "et cetera"}
"""Abbreviations that end a name or a list; their full stop also ends a sentence before a capital."""
INLINE_ABBREVIATIONS = {"e.g.": "for example", "i.e.": "that is", "vs.": "versus", "vs": "versus",
                        "approx.": "approximately", "fig.": "figure", "dept.": "department",
                        "est.": "established", "cf.": "compare", "a.k.a.": "also known as",
                        "aka": "also known as"}
NUMBER_ABBREVIATIONS = {"no": "number", "nos": "numbers", "pp": "pages", "p": "page",
                        "ext": "extension", "vol": "volume", "vols": "volumes", "ch": "chapter",
                        "art": "article", "para": "paragraph", "sec": "section", "apt": "apartment",
                        "ste": "suite", "rm": "room", "fl": "floor"}
"""Abbreviations read only before a number or a Roman numeral (``No. 5``, ``pp. 45-67``, ``Vol. IV``,
``Apt. 4B``)."""

ROMAN_TITLE_WORDS = _words(
    "chapter part volume book act scene section article phase stage level season episode type "
    "class category title round grade schedule annex appendix unit series tier step psalm canto "
    "page figure table war bowl vatican version mark mk generation council amendment division "
    "league world movement symphony opus")
"""A Roman numeral after one of these words (any case) is a cardinal: ``Chapter IV`` -> "Chapter
four", ``World War II``, ``Super Bowl LVII``."""
REGNAL_NAMES = _words(
    "Henry Louis Elizabeth George Charles Edward William James John Richard Paul Pius Benedict Leo "
    "Gregory Innocent Clement Urban Boniface Alexander Nicholas Peter Catherine Frederick Philip "
    "Ferdinand Ivan Mary Anne Napoleon Ramesses Rameses Amenhotep Thutmose Constantine Justinian "
    "Otto Wilhelm Friedrich Carlos Juan Felipe Alfonso Gustav Gustavus Christian Frederik Haakon "
    "Olav Harald Rama Selim Mehmed Suleiman Murad Ahmed Edmund Stephen David Robert Kenneth Duncan "
    "Sixtus Julius Adrian Celestine Martin Felix Sergius Honorius Eugene Vladimir Casimir Sigismund "
    "Ludwig Maximilian Leopold Francis Joseph Rudolf Pedro Manuel Victor Umberto Baldwin Amadeus "
    "Hadrian Marcus Darius Xerxes Cyrus Ptolemy Antiochus Seleucus Cleopatra Sancho Jaime Olaf "
    "Magnus Eric Erik Valdemar Canute Cnut Harold Stanislaus Boleslaw Wenceslaus Bela Matthias "
    "Theodore Basil Michael Andronikos Manuel Isaac Alexios Romanos Leon Gustaf Karl Mohammed "
    "Hussein Abdullah Faisal Farouk Fuad Reza")
"""Given names of monarchs and popes: a Roman numeral after one is a regnal ordinal
(``Henry VIII`` -> "Henry the Eighth")."""
ROYAL_TITLES = _words(
    "King Queen Pope Emperor Empress Tsar Czar Tsarina Prince Princess Duke Duchess Pharaoh "
    "Sultan Shah Kaiser Emir Archduke Grand Count Countess Earl Antipope")
"""A name after one of these takes a regnal numeral even when it is not in ``REGNAL_NAMES``."""
ROMAN_STOPWORDS = _words(
    "the a an this that these those my your his her its our their and or but of in on at to for "
    "with by from as is are was were be been give gave take took get got need needs use used "
    "start started put")
"""Capitalised words (at a sentence start) after which I/V/X letters are not a numeral."""

HTML_INLINE = _words(
    "a abbr b bdi bdo big cite code data del dfn em font i ins kbd mark q s samp small span strike "
    "strong sub sup time tt u var label")
"""Inline HTML elements: removed without a space (``<b>bold</b>`` -> "bold")."""
HTML_BLOCK = _words(
    "address article aside blockquote body br caption center col colgroup dd details dialog dir "
    "div dl dt fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html "
    "iframe img input li link main menu meta nav noscript object ol option p picture pre section "
    "select source summary table tbody td template textarea tfoot th thead title tr track ul "
    "video audio wbr button canvas embed map area param")
"""Block and void HTML elements: replaced by a line break, which ends a sentence."""
HTML_VOID = _words("area base br col embed hr img input link meta param source track wbr")
HTML_DROPPED_WITH_CONTENT = frozenset({"script", "style"})
