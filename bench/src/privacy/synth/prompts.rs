//! Built-in conversations for the synthetic scheme matrix (user prompt,
//! assistant response), and the public calibration text the worker uses
//! for its channel scales (deliberately unrelated to the conversations).

pub const CONVERSATIONS: &[(&str, &str)] = &[
    ("What is the capital of France?", "The capital of France is Paris, a city known for the Eiffel Tower and its museums."),
    ("Write a haiku about the sea.", "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time."),
    ("How do I reverse a list in Python?", "Use slicing: my_list[::-1] returns a reversed copy, while my_list.reverse() reverses it in place."),
    ("My blood test shows high cholesterol. What should I ask my doctor?", "Ask about your LDL and HDL levels, whether diet changes are enough, and if medication such as a statin makes sense."),
    ("Summarize the plot of Romeo and Juliet in two sentences.", "Two young lovers from feuding families in Verona marry in secret. A chain of misunderstandings ends with both taking their own lives."),
    ("Translate 'good morning, how are you?' into Spanish.", "Buenos días, ¿cómo estás?"),
    ("What is 17 times 23?", "17 times 23 is 391."),
    ("Give me three tips for a job interview.", "Research the company, prepare concrete examples of your work, and ask thoughtful questions at the end."),
    ("Explain photosynthesis to a child.", "Plants catch sunlight with their green leaves and use it to turn air and water into food, giving off oxygen for us to breathe."),
    ("My password is hunter2, is that safe?", "No. It is short and widely known; use a long passphrase from a password manager and turn on two-factor authentication."),
    ("Draft a short apology email for missing a meeting.", "Hi Sam, I am sorry I missed this morning's meeting. Could we find another time this week? I will come prepared. Best, Alex"),
    ("What causes the seasons on Earth?", "The tilt of Earth's axis: as Earth orbits the Sun, each hemisphere leans toward it in summer and away from it in winter."),
    ("Recommend a book about history.", "Try 'The Guns of August' by Barbara Tuchman, a vivid account of the first month of World War One."),
    ("How can I lower my electricity bill?", "Switch to LED bulbs, unplug idle devices, wash clothes in cold water, and set the thermostat a degree or two lower."),
    ("Write a SQL query that counts users by country.", "SELECT country, COUNT(*) AS users FROM users GROUP BY country ORDER BY users DESC;"),
    ("I feel anxious before exams. Any advice?", "Study in short sessions, sleep well the night before, and try slow breathing: four seconds in, six seconds out."),
    ("What is the difference between a virus and a bacterium?", "Bacteria are living cells that can reproduce on their own; viruses are much smaller and need a host cell to copy themselves."),
    ("Name the planets of the solar system.", "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune."),
    ("How long should I boil an egg?", "About seven minutes for a jammy yolk and ten minutes for a fully hard-boiled egg."),
    ("Tell me a fun fact about octopuses.", "An octopus has three hearts and blue blood, and each of its arms can taste what it touches."),
    ("Is it legal to record a phone call without consent in California?", "No. California requires the consent of everyone on the call, so recording without telling them is generally illegal."),
    ("Convert 100 degrees Fahrenheit to Celsius.", "100 degrees Fahrenheit is about 37.8 degrees Celsius."),
    ("Suggest a name for a bakery.", "How about 'Rise and Crumb', a warm name that hints at fresh bread every morning?"),
    ("What does a Rust borrow checker do?", "It checks at compile time that references never outlive their data and that mutable access is exclusive, preventing data races."),
];

pub const CALIBRATION_TEXT: &str = "The committee met on Tuesday to review the annual report. Rainfall in the northern valleys was above average, \
and the harvest of wheat, barley and oats improved on the previous year. The railway timetable changes in spring; passengers should \
check the new departure times. In mathematics, a prime number has exactly two divisors: one and itself. The museum will open a new \
gallery of ceramics, textiles and early photographs. Engineers tested the bridge with loaded trucks before it opened to traffic. \
Please remember to return library books by the end of the month. The orchestra performed symphonies by Haydn and Brahms to a full hall. \
def add(a, b):\n    return a + b\n\nRecipe: mix flour, sugar and butter, then bake at 180 °C for twenty minutes. 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.";
