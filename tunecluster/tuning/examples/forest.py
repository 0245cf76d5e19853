"""A model-free example (`up --example pima-forest`): a scikit-learn random forest on the Pima
data, tuned through `run_trial` instead of a Keras hypermodel. Its workers import no TensorFlow;
each trial grows one forest, seeded with the training's seed, and is scored on the validation split."""

from sklearn.ensemble import RandomForestClassifier

FEATURES = {"sqrt": "sqrt", "log2": "log2", "all": None}  # None: every feature at every split


def run_trial(hp, data, seed):
    forest = RandomForestClassifier(
        n_estimators=hp.Int("trees", 20, 200, step=20),
        max_depth=hp.Int("max_depth", 2, 12),
        min_samples_leaf=hp.Int("min_samples_leaf", 1, 20),
        max_features=FEATURES[hp.Choice("max_features", list(FEATURES))],
        random_state=seed,
        n_jobs=1,
    )
    forest.fit(data.x_train, data.y_train)
    return {"accuracy": forest.score(data.x_train, data.y_train),
            "val_accuracy": forest.score(data.x_val, data.y_val)}
