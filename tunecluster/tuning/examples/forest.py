"""A model-free example (`up --example pima-forest`): a scikit-learn random forest on the Pima
data, tuned through `run_trial` instead of a Keras hypermodel. Its workers import no TensorFlow;
each trial grows one forest, seeded with the training's seed, and is scored on the validation split.

`declare_hyperparameters` registers the space (and returns the forest's settings from `hp`), so
the workers know the whole space from the start; without it, the first trial would run with the
defaults while the other workers wait (see tunecluster/cluster/worker/function_tuner.py)."""

from sklearn.ensemble import RandomForestClassifier

FEATURES = {"sqrt": "sqrt", "log2": "log2", "all": None}  # None: every feature at every split


def declare_hyperparameters(hp):
    return {"n_estimators": hp.Int("trees", 20, 200, step=20),
            "max_depth": hp.Int("max_depth", 2, 12),
            "min_samples_leaf": hp.Int("min_samples_leaf", 1, 20),
            "max_features": FEATURES[hp.Choice("max_features", list(FEATURES))]}


def run_trial(hp, data, seed):
    forest = RandomForestClassifier(**declare_hyperparameters(hp), random_state=seed, n_jobs=1)
    forest.fit(data.x_train, data.y_train)
    return {"accuracy": forest.score(data.x_train, data.y_train),
            "val_accuracy": forest.score(data.x_val, data.y_val)}
