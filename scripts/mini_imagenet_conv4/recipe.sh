# Conv-4 on mini-ImageNet (see scripts/seed_stages.sh)
DATASET=mini_imagenet
MODEL=Conv4
