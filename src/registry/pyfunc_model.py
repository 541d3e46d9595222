"""The packaged model's code (MLflow "models from code"): MLflow copies this file into the
model folder and runs it to build the pyfunc, so nothing is pickled. `EncoderPyfunc` lives in
:mod:`speakerops.registry.package`; its encoder file is one of the model's artifacts."""

from mlflow.models import set_model

from speakerops.registry.package import EncoderPyfunc

set_model(EncoderPyfunc())
