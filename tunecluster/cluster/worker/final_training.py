"""The spec's `final` stage, run by the exporting worker after the search and the confirmation
stage: train the chosen configuration longer (continuing its checkpoint with `initial_epoch`, as
the Pima tutorial does, or afresh), keep the weights of its best epoch on the validation rows, and
hand the model back for export."""

from __future__ import annotations

import logging

import keras

from tunecluster.cluster.worker.callbacks import BestWeights

log = logging.getLogger("tunecluster.worker")


def train_final(tuner, splits, spec, checkpoint_model, hyperparameters):
    """Return (model, what happened): the model to export, and a record of the final training."""
    final, fit = spec.final, spec.fit
    objective = tuner.oracle.objective
    if final.from_checkpoint:
        model, initial_epoch = checkpoint_model, fit.epochs
    else:
        tuner._seed, tuner._confirming = spec.tuner.seed, True  # a fresh build, no parent weights
        try:
            model = tuner._try_build(hyperparameters)
        finally:
            tuner._confirming = False
        initial_epoch = 0
    best = BestWeights(objective)
    callbacks = [best]
    if final.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=objective.name, mode=objective.direction,
                                                       patience=final.early_stopping_patience))
    log.info("final training: epochs %d to %d (%s)", initial_epoch + 1, final.epochs,
             "from the checkpoint" if final.from_checkpoint else "afresh")
    history = model.fit(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                        epochs=final.epochs, initial_epoch=initial_epoch, batch_size=fit.batch_size,
                        verbose=fit.verbose, callbacks=callbacks)
    epochs_run = len(next(iter(history.history.values()), []))
    if best.weights is not None and not best.best_is_last:
        model.set_weights(best.weights)
    best_index = best.best_index if best.best_index is not None else epochs_run - 1
    return model, {"epochs": final.epochs, "early_stopping_patience": final.early_stopping_patience,
                   "from_checkpoint": final.from_checkpoint, "initial_epoch": initial_epoch,
                   "epochs_run": epochs_run, "best_epoch": initial_epoch + best_index + 1,  # 1-based, as Keras prints
                   "best_value": best.best_value}
