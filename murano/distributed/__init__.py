"""Running murano on Ray Serve across GPUs and machines (`murano serve --ray`).

    cluster      start or join a Ray cluster, run the application, drain it on SIGTERM
    application  the Serve application: the ingress deployment (murano's FastAPI app) and
                 one deployment per model, sized by the entry's `[models.ray]` table
    remote       the ingress's engine: jobs go to the model deployments
    replica      a model replica: one pipeline and murano's own engine around it

Only `cluster` and `application` import Ray.
"""
