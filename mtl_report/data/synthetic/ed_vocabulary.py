"""Real MIMIC-IV-ED vocabularies the ED simulator draws from: race, arrival, disposition,
chief complaints and ICD titles by finding category, and the implausible vitals it injects.

Part of :mod:`mtl_report.data.synthetic` (SYNTHETIC data; see the package docstring)."""

from __future__ import annotations

_RACES: tuple[tuple[str, float], ...] = (
    ("WHITE", 0.55),
    ("BLACK/AFRICAN AMERICAN", 0.17),
    ("HISPANIC/LATINO - PUERTO RICAN", 0.03),
    ("HISPANIC/LATINO - DOMINICAN", 0.02),
    ("HISPANIC OR LATINO", 0.015),
    ("ASIAN", 0.015),
    ("ASIAN - CHINESE", 0.015),
    ("ASIAN - SOUTH EAST ASIAN", 0.005),
    ("WHITE - OTHER EUROPEAN", 0.02),
    ("WHITE - RUSSIAN", 0.01),
    ("BLACK/CAPE VERDEAN", 0.01),
    ("BLACK/CARIBBEAN ISLAND", 0.008),
    ("PORTUGUESE", 0.005),
    ("SOUTH AMERICAN", 0.003),
    ("AMERICAN INDIAN/ALASKA NATIVE", 0.003),
    ("MULTIPLE RACE/ETHNICITY", 0.003),
    ("NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", 0.002),
    ("OTHER", 0.045),
    ("UNKNOWN", 0.04),
    ("UNABLE TO OBTAIN", 0.01),
    ("PATIENT DECLINED TO ANSWER", 0.01),
)
_ARRIVAL = ("WALK IN", "AMBULANCE", "UNKNOWN", "OTHER", "HELICOPTER")
_DISPOSITION = (
    "ADMITTED",
    "HOME",
    "TRANSFER",
    "LEFT WITHOUT BEING SEEN",
    "LEFT AGAINST MEDICAL ADVICE",
    "ELOPED",
    "OTHER",
    "EXPIRED",
)
_COMPLAINTS: tuple[tuple[str, ...], ...] = (  # by _category
    (
        "SOB",
        "Chest pain",
        "L Chest pain",
        "R Chest pain",
        "Dyspnea",
        "SOB, CP",
        "s/p Fall",
        "Pneumothorax",
    ),
    ("Dyspnea", "SOB", "DOE", "SOB, Leg swelling", "Pleural effusion", "Abnormal CXR", "Cough"),
    ("COUGH, FEVER", "Cough", "Fever", "Hypoxia", "SOB, Cough", "PNA", "Fever, Cough", "Dyspnea"),
    ("SOB", "Dyspnea", "Leg swelling", "CHF", "SOB, CP", "DOE", "Weakness"),
    ("Abd pain", "s/p Fall", "Weakness", "SOB", "Chest pain", "N/V", "Post op"),
    (
        "Chest pain",
        "CP",
        "s/p Fall",
        "Abd pain",
        "N/V",
        "Weakness",
        "Dizziness",
        "Syncope",
        "Palpitations",
        "Cough",
        "Headache",
        "ETOH",
        "MVC",
        "Back pain",
        "SOB",
        "Altered mental status",
        "Fever",
    ),
)
_ICD_PRIMARY: tuple[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], ...] = (
    (  # pneumothorax: (ICD-10 entries, ICD-9 entries)
        (
            ("J939", "Pneumothorax, unspecified"),
            ("J9311", "Primary spontaneous pneumothorax"),
            ("J9383", "Other pneumothorax"),
            ("S270XXA", "Traumatic pneumothorax, initial encounter"),
        ),
        (
            ("5128", "OTHER SPONTANEOUS PNEUMOTHORAX"),
            ("5120", "SPONTANEOUS TENSION PNEUMOTHORAX"),
            ("8600", "TRAUMATIC PNEUMOTHORAX WITHOUT MENTION OF OPEN WOUND INTO THORAX"),
        ),
    ),
    (  # pleural effusion
        (
            ("J90", "Pleural effusion, not elsewhere classified"),
            ("J918", "Pleural effusion in other conditions classified elsewhere"),
            ("R0602", "Shortness of breath"),
        ),
        (("5119", "UNSPECIFIED PLEURAL EFFUSION"), ("78605", "SHORTNESS OF BREATH")),
    ),
    (  # opacity / pneumonia
        (
            ("J189", "Pneumonia, unspecified organism"),
            ("J181", "Lobar pneumonia, unspecified organism"),
            ("J690", "Pneumonitis due to inhalation of food and vomit"),
            ("R509", "Fever, unspecified"),
            ("R0902", "Hypoxemia"),
        ),
        (
            ("486", "PNEUMONIA, ORGANISM UNSPECIFIED"),
            ("78060", "FEVER, UNSPECIFIED"),
            ("7862", "COUGH"),
        ),
    ),
    (  # cardiomegaly / heart failure
        (
            ("I509", "Heart failure, unspecified"),
            ("I5023", "Acute on chronic systolic (congestive) heart failure"),
            ("I5033", "Acute on chronic diastolic (congestive) heart failure"),
            ("I517", "Cardiomegaly"),
            ("R0602", "Shortness of breath"),
        ),
        (
            ("4280", "CONGESTIVE HEART FAILURE, UNSPECIFIED"),
            ("78605", "SHORTNESS OF BREATH"),
            ("4293", "CARDIOMEGALY"),
        ),
    ),
    (  # atelectasis
        (
            ("J9811", "Atelectasis"),
            ("R0602", "Shortness of breath"),
            ("R1010", "Upper abdominal pain, unspecified"),
            ("W19XXXA", "Unspecified fall, initial encounter"),
        ),
        (
            ("5180", "PULMONARY COLLAPSE"),
            ("78605", "SHORTNESS OF BREATH"),
            ("78900", "ABDOMINAL PAIN, UNSPECIFIED SITE"),
        ),
    ),
    (  # normal
        (
            ("R079", "Chest pain, unspecified"),
            ("R0789", "Other chest pain"),
            ("R0602", "Shortness of breath"),
            ("R55", "Syncope and collapse"),
            ("W19XXXA", "Unspecified fall, initial encounter"),
            ("R51", "Headache"),
            ("R42", "Dizziness and giddiness"),
            ("R109", "Unspecified abdominal pain"),
            ("R05", "Cough"),
            ("R531", "Weakness"),
            ("R002", "Palpitations"),
        ),
        (
            ("78650", "CHEST PAIN NOS"),
            ("78659", "CHEST PAIN NEC"),
            ("78605", "SHORTNESS OF BREATH"),
            ("7802", "SYNCOPE AND COLLAPSE"),
            ("E8889", "FALL NOS"),
            ("7840", "HEADACHE"),
            ("7804", "DIZZINESS AND GIDDINESS"),
            ("7862", "COUGH"),
        ),
    ),
)
_ICD_SECONDARY: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = (
    (
        ("I10", "Essential (primary) hypertension"),
        ("E119", "Type 2 diabetes mellitus without complications"),
        ("E785", "Hyperlipidemia, unspecified"),
        ("Z87891", "Personal history of nicotine dependence"),
        ("J449", "Chronic obstructive pulmonary disease, unspecified"),
        ("N179", "Acute kidney failure, unspecified"),
        ("I4891", "Unspecified atrial fibrillation"),
        ("Z7901", "Long term (current) use of anticoagulants"),
        ("E876", "Hypokalemia"),
    ),
    (
        ("4019", "UNSPECIFIED ESSENTIAL HYPERTENSION"),
        (
            "25000",
            "DIABETES MELLITUS WITHOUT MENTION OF COMPLICATION, TYPE II OR UNSPECIFIED "
            "TYPE, NOT STATED AS UNCONTROLLED",
        ),
        ("2724", "OTHER AND UNSPECIFIED HYPERLIPIDEMIA"),
        ("3051", "TOBACCO USE DISORDER"),
        ("496", "CHRONIC AIRWAY OBSTRUCTION, NOT ELSEWHERE CLASSIFIED"),
        ("42731", "ATRIAL FIBRILLATION"),
        ("5849", "ACUTE KIDNEY FAILURE, UNSPECIFIED"),
    ),
)
#: Physiologically implausible values injected into ~1.5% of triage rows.
IMPLAUSIBLE_VITALS: tuple[tuple[str, float], ...] = (
    ("o2sat", 0.0),
    ("o2sat", 150.0),
    ("heartrate", 0.0),
    ("heartrate", 400.0),
    ("temperature", 980.0),
    ("temperature", 20.0),
    ("sbp", 0.0),
    ("dbp", 500.0),
)
