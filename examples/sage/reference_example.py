# The example of SAGE's kernel-runtime-services page, exactly as SAGE documents it (its import
# line included). Run it with sage_nb standing in for SAGE:
#
#     python -m sage_nb.compat examples/sage/reference_example.py
from sage.core.api import LocalEnvironment, MapFunction

env = LocalEnvironment("demo")


@env.register_service("profile")
class ProfileService:
    def process(self, user_id: str):
        return {"user_id": user_id, "score": 0.9}


class Enrich(MapFunction):
    def execute(self, record):
        profile = self.call_service("profile", record["user_id"])
        return {**record, "profile": profile}


env.from_batch([{"user_id": "42"}]).map(Enrich()).sink(print)
env.submit()
